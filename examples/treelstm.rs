//! Tree-LSTM training on batches of new SST-like trees (issue 23): sentences
//! per second with and without autobatching at B = 1, 8, 32, 64, 256, the time
//! by phase, the kernels per batch against the lower bound, and a chart.
//!
//! Run: `cargo run --release --example treelstm [-- OUT_DIR [EXAMPLES [SIZES]]]`
//! (default out/structure and 1280 trees per batch size: 20 batches of 64;
//! SIZES, comma-separated, default 1,8,32,64,256).

#[path = "common/structure.rs"]
mod common;

use batchgraph::structure::{sst_like_trees, tree_batch, tree_lstm, FastPath, TreeLstmSizes};
use batchgraph::Rng;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).map_or("out/structure", String::as_str));
    let examples: usize = args.get(2).map_or(1280, |n| n.parse().expect("EXAMPLES is a number"));
    let s = TreeLstmSizes::sst();
    let model = tree_lstm(s);
    let start = Instant::now();
    let mut fast = FastPath::new(&model).expect("compile the cells");
    println!(
        "Tree-LSTM (N-ary, hidden {}, embeddings {} from {} words, {} classes), SGD; SST-like random trees, new ones every batch.",
        s.hidden, s.embed, s.vocab, s.classes
    );
    println!(
        "Cells compiled once (the e-graph batches each cell's body at 2 and 3 rows): {:.2} s; re-declared at any row count: {}.\n",
        start.elapsed().as_secs_f64(),
        fast.generic()
    );
    let make = |seed: u64, size: usize| tree_batch(&sst_like_trees(&mut Rng::new(seed), size, s.vocab, s.classes), s);
    common::measure_and_report(
        &model,
        &mut fast,
        &common::sizes(args.get(3)),
        examples,
        &make,
        "sentences",
        "Tree-LSTM, SST-like trees: training speed",
        &out.join("treelstm.svg"),
    );
}
