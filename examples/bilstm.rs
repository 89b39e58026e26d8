//! BiLSTM tagger training on batches of new WikiNER-like sentences (issue 23):
//! sentences per second with and without autobatching at B = 1, 8, 32, 64,
//! 256, the time by phase, kernels against the lower bound, a chart; then,
//! on 64 sentences of one length, the fast path against the per-sentence
//! program batched by `batch --strategy fuse` (hand batching's stand-in).
//!
//! Run: `cargo run --release --example bilstm [-- OUT_DIR [EXAMPLES [SIZES]]]`
//! (default out/structure, 1280 sentences per batch size, SIZES
//! comma-separated, default 1,8,32,64,256).

#[path = "../src/bin/batchgraph/alloc.rs"]
mod alloc;
#[path = "common/structure.rs"]
mod common;

use batchgraph::structure::{
    batch_program, bilstm_tagger, init_params, random_sentence, sentence_batch, wikiner_like_sentences, FastPath,
    Model, TaggerSizes,
};
use batchgraph::{BatchReduce, Batcher, Interpreter, Rng, Strategy, Values};
use std::time::{Duration, Instant};

fn main() {
    // As the `batchgraph` command does (and so `batch --strategy fuse`, the
    // tagger's yardstick): keep freed blocks for reuse. Both ways run in this
    // process; without it, the batched cells' mid-sized values were given back
    // to the system after each level and page-faulted in again on the next.
    alloc::keep_freed_memory();
    let args = common::args();
    let s = TaggerSizes::wikiner();
    let model = bilstm_tagger(s);
    let mut fast = common::compile(
        &model,
        &format!(
            "BiLSTM tagger (hidden {} per direction, embeddings {} from {} words, {} tags), SGD; WikiNER-like sentences, new ones every batch.",
            s.hidden, s.embed, s.vocab, s.tags
        ),
        "",
    );
    let make = |seed: u64, size: usize| {
        sentence_batch(&wikiner_like_sentences(&mut Rng::new(seed), size, s.vocab, s.tags), s).expect("sentences")
    };
    common::measure_and_report(
        &model,
        &mut fast,
        &args.sizes,
        args.examples,
        &make,
        "sentences",
        "BiLSTM tagger, WikiNER-like sentences: training speed",
        &args.out.join("bilstm.svg"),
    );
    equal_lengths(&model, s, &mut fast);
}

/// 64 sentences of 20 tokens: the fast path against the per-sentence program
/// batched by the batcher (`--strategy fuse`, the mean loss), forward and
/// backward, the same sentences, 30 runs each after one warm-up, interleaved.
fn equal_lengths(model: &Model, s: TaggerSizes, fast: &mut FastPath) {
    let (size, length, runs) = (64, 20, 30);
    let mut rng = Rng::new(7);
    let sentences: Vec<_> = (0..size)
        .map(|_| random_sentence(&mut rng, length, s.vocab, s.tags))
        .collect();
    let params = init_params(model, 1);
    let batch = sentence_batch(&sentences, s).expect("sentences");
    // The per-sentence program, batched over its inputs (the looked-up rows and the labels).
    let one = sentence_batch(&sentences[..1], s).expect("one sentence");
    let (program, _) = batch_program(model, &one, &params).expect("program");
    let over: Vec<String> = program.inputs.iter().map(|d| d.name.clone()).collect();
    let start = Instant::now();
    let fused = Batcher::new(&program)
        .over(over.clone())
        .size(size)
        .strategy(Strategy::Fuse)
        .reduce(BatchReduce::Mean)
        .run()
        .expect("batch --strategy fuse");
    let batching = start.elapsed();
    let mut values: Values<f64> = Values::new();
    let per_sentence: Vec<Values<f64>> = (0..size)
        .map(|e| {
            batch_program(model, &sentence_batch(&sentences[e..e + 1], s).unwrap(), &params)
                .unwrap()
                .1
        })
        .collect();
    for name in &over {
        let rows: Vec<_> = per_sentence.iter().map(|v| v[name].view()).collect();
        values.insert(
            name.clone(),
            ndarray::stack(ndarray::Axis(0), &rows).expect("equal shapes"),
        );
    }
    for (name, _) in &model.params {
        values.insert(name.to_string(), params[*name].clone());
    }
    let interpreter = Interpreter::new(&fused.program);
    let fused_loss = interpreter.gradient(&values).expect("fused gradient").outputs[0]
        .1
        .sum();
    let p = params.clone();
    let plan = fast.plan(&batch).expect("plan");
    let fast_loss = fast.run(&batch, &plan, &p).expect("fast").loss;
    // The two ways interleaved, run after run, each way's fastest run kept: a
    // run slowed by other work on the machine says nothing about the code.
    let (mut fused_time, mut fast_time) = (Duration::MAX, Duration::MAX);
    for _ in 0..runs {
        let start = Instant::now();
        interpreter.gradient(&values).expect("fused gradient");
        fused_time = fused_time.min(start.elapsed());
        let start = Instant::now();
        // The gradient only (no update), as the fused run.
        fast.run(&batch, &plan, &p).expect("fast");
        fast_time = fast_time.min(start.elapsed());
    }
    println!("\nEqual lengths: {size} sentences of {length} tokens, forward and backward (the faster of {runs} runs each, interleaved):");
    println!(
        "- `batch --strategy fuse` on the per-sentence program: {:.2} ms ({:.0} sentences/s; batching it took {:.2} s once)",
        fused_time.as_secs_f64() * 1e3,
        size as f64 / fused_time.as_secs_f64(),
        batching.as_secs_f64()
    );
    println!(
        "- the fast path: {:.2} ms ({:.0} sentences/s): {:.0}% of the fused program's speed",
        fast_time.as_secs_f64() * 1e3,
        size as f64 / fast_time.as_secs_f64(),
        100.0 * fused_time.as_secs_f64() / fast_time.as_secs_f64()
    );
    println!("- losses: fused {fused_loss:.12}, fast path {fast_loss:.12}");
}
