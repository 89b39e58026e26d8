//! Tree-LSTM training on batches of new SST-like trees (issue 23): sentences
//! per second with and without autobatching at B = 1, 8, 32, 64, 256, the time
//! by phase, the kernels per batch against the lower bound, and a chart.
//!
//! Run: `cargo run --release --example treelstm [-- OUT_DIR [EXAMPLES [SIZES]]]`
//! (default out/structure and 1280 trees per batch size: 20 batches of 64;
//! SIZES, comma-separated, default 1,8,32,64,256).

#[path = "../src/bin/batchgraph/alloc.rs"]
mod alloc;
#[path = "common/structure.rs"]
mod common;

use batchgraph::structure::{sst_like_trees, tree_batch, tree_lstm, TreeLstmSizes};
use batchgraph::Rng;

fn main() {
    // As the `batchgraph` command does (and so `batch --strategy fuse`, the
    // tagger's yardstick): keep freed blocks for reuse. Both ways run in this
    // process; without it, the batched cells' mid-sized values were given back
    // to the system after each level and page-faulted in again on the next.
    alloc::keep_freed_memory();
    let args = common::args();
    let s = TreeLstmSizes::sst();
    let model = tree_lstm(s);
    let mut fast = common::compile(
        &model,
        &format!(
            "Tree-LSTM (N-ary, hidden {}, embeddings {} from {} words, {} classes), SGD; SST-like random trees, new ones every batch.",
            s.hidden, s.embed, s.vocab, s.classes
        ),
        " (the e-graph batches each cell's body at 2 and 3 rows)",
    );
    let make = |seed: u64, size: usize| tree_batch(&sst_like_trees(&mut Rng::new(seed), size, s.vocab, s.classes), s);
    common::measure_and_report(
        &model,
        &mut fast,
        &args.sizes,
        args.examples,
        &make,
        "sentences",
        "Tree-LSTM, SST-like trees: training speed",
        &args.out.join("treelstm.svg"),
    );
}
