//! A BiLSTM tagger: an LSTM reads the sentence left to right, another right
//! to left, and each token's tag is predicted from both states
//! (`W [h_fwd; h_bwd] + b`, softmax cross-entropy); a sentence's loss is the
//! sum over its tokens. Cells: the two directions' first steps (no state
//! before them), their next steps, and the tag head. Step `k` of a sentence
//! runs both directions at once (the forward LSTM on token `k`, the backward
//! on token `n - 1 - k`), their states stacked, so that each elementwise op
//! of a step is one kernel for both directions: the two chains are always at
//! the same depth, and the lower bound batches their elementwise ops together.

use super::data::Sentence;
use super::graph::{Arg, Batch, Call, Cell, Model};
use super::treelstm::{head, one_hot};
use crate::error::Result;
use crate::front::ProgramBuilder;
use egg::Id;

/// The sizes of the tagger.
#[derive(Clone, Copy, Debug)]
pub struct TaggerSizes {
    /// Width of each direction's `h` and `c`.
    pub hidden: usize,
    /// Width of a word's embedding.
    pub embed: usize,
    /// Rows of the embedding matrix.
    pub vocab: usize,
    /// Tags.
    pub tags: usize,
}

impl TaggerSizes {
    /// Hidden 64 per direction, embeddings of 64 from 1,000 words, 9 tags (IOB over WikiNER's 4 classes).
    pub fn wikiner() -> Self {
        TaggerSizes {
            hidden: 64,
            embed: 64,
            vocab: 1000,
            tags: 9,
        }
    }
}

/// Both directions' LSTM steps from their gates' pre-activations, stacked
/// (`[i f o u]` forward, then backward, each `4H`): each elementwise op runs
/// once over both directions (their `i, f, o` sigmoids as one, their `u`
/// tanhs as one), and `h`, `c` hold the forward half then the backward half.
/// `c` is `i * u` plus `f * c_prev` when there is a previous state.
fn lstm_both_from_gates(b: &mut ProgramBuilder, gates: Id, c_prev: Option<Id>) -> Result<Vec<Id>> {
    let w = b.shape(gates).dims()[0] / 8;
    let halves = |b: &mut ProgramBuilder, of: Id, at: [usize; 2], len: usize| -> Result<Id> {
        let fwd = b.slice(of, 0, at[0], at[0] + len)?;
        let bwd = b.slice(of, 0, at[1], at[1] + len)?;
        b.concat(&[fwd, bwd], 0)
    };
    let pre = halves(b, gates, [0, 4 * w], 3 * w)?;
    let squashed = b.sigmoid(pre)?;
    let i = halves(b, squashed, [0, 3 * w], w)?;
    let f = halves(b, squashed, [w, 4 * w], w)?;
    let o = halves(b, squashed, [2 * w, 5 * w], w)?;
    let last = halves(b, gates, [3 * w, 7 * w], w)?;
    let u = b.tanh(last)?;
    let mut c = b.mul(i, u)?;
    if let Some(c_prev) = c_prev {
        let fc = b.mul(f, c_prev)?;
        c = b.add(c, fc)?;
    }
    let tc = b.tanh(c)?;
    Ok(vec![b.mul(o, tc)?, c])
}

/// `concat(w_fwd @ x_fwd, w_bwd @ x_bwd)`: both directions' products, stacked.
fn both_products(b: &mut ProgramBuilder, w: [Id; 2], x: [Id; 2]) -> Result<Id> {
    let fwd = b.matmul(w[0], x[0])?;
    let bwd = b.matmul(w[1], x[1])?;
    b.concat(&[fwd, bwd], 0)
}

/// The first step of both directions: the forward LSTM on the first token
/// and the backward LSTM on the last, with no state before them.
fn first_steps(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let (wx_fwd, b_fwd, wx_bwd, b_bwd) = (params[0], params[1], params[2], params[3]);
    let g = both_products(b, [wx_fwd, wx_bwd], [args[0], args[1]])?;
    let bias = b.concat(&[b_fwd, b_bwd], 0)?;
    let gates = b.add(g, bias)?;
    lstm_both_from_gates(b, gates, None)
}

/// The next step of both directions, from both states (`h`, `c`: forward half, backward half).
fn next_steps(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let (h, c) = (args[2], args[3]);
    let (wx_fwd, wh_fwd, b_fwd, wx_bwd, wh_bwd, b_bwd) =
        (params[0], params[1], params[2], params[3], params[4], params[5]);
    let w = b.shape(h).dims()[0] / 2;
    let h_fwd = b.slice(h, 0, 0, w)?;
    let h_bwd = b.slice(h, 0, w, 2 * w)?;
    let gx = both_products(b, [wx_fwd, wx_bwd], [args[0], args[1]])?;
    let gh = both_products(b, [wh_fwd, wh_bwd], [h_fwd, h_bwd])?;
    let g = b.add(gx, gh)?;
    let bias = b.concat(&[b_fwd, b_bwd], 0)?;
    let gates = b.add(g, bias)?;
    lstm_both_from_gates(b, gates, Some(c))
}

/// A token's tag loss from the forward half of the step that read it going
/// forward and the backward half of the step that read it going backward.
fn tag_head(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let w = b.shape(args[0]).dims()[0] / 2;
    let fwd = b.slice(args[0], 0, 0, w)?;
    let bwd = b.slice(args[1], 0, w, 2 * w)?;
    let both = b.concat(&[fwd, bwd], 0)?;
    head(b, &[both, args[2]], params)
}

/// Cell indices: both directions' first steps, their next steps, the head.
const FIRST: usize = 0;
const NEXT: usize = 1;
const TAG: usize = 2;

/// The tagger.
pub fn bilstm_tagger(s: TaggerSizes) -> Model {
    let (h, e) = (s.hidden, s.embed);
    Model {
        params: vec![
            ("wx_fwd", vec![4 * h, e]),
            ("wh_fwd", vec![4 * h, h]),
            ("b_fwd", vec![4 * h]),
            ("wx_bwd", vec![4 * h, e]),
            ("wh_bwd", vec![4 * h, h]),
            ("b_bwd", vec![4 * h]),
            ("w_tag", vec![s.tags, 2 * h]),
            ("b_tag", vec![s.tags]),
        ],
        embedding: ("embedding", [s.vocab, e]),
        cells: vec![
            Cell {
                name: "first_steps",
                args: vec![vec![e], vec![e]],
                params: vec!["wx_fwd", "b_fwd", "wx_bwd", "b_bwd"],
                outputs: 2,
                body: first_steps,
            },
            Cell {
                name: "next_steps",
                args: vec![vec![e], vec![e], vec![2 * h], vec![2 * h]],
                params: vec!["wx_fwd", "wh_fwd", "b_fwd", "wx_bwd", "wh_bwd", "b_bwd"],
                outputs: 2,
                body: next_steps,
            },
            Cell {
                name: "tag_loss",
                args: vec![vec![2 * h], vec![2 * h], vec![s.tags]],
                params: vec!["w_tag", "b_tag"],
                outputs: 1,
                body: tag_head,
            },
        ],
    }
}

/// The calls of one sentence (at least one token): step `k` reads token `k`
/// going forward and token `n - 1 - k` going backward, so both directions
/// advance together; then a tag head per token.
fn sentence_calls(sentence: &Sentence, tags: usize) -> Vec<Call> {
    let words = &sentence.words;
    let n = words.len();
    let mut calls: Vec<Call> = vec![];
    for k in 0..n {
        let mut args = vec![Arg::Lookup(words[k]), Arg::Lookup(words[n - 1 - k])];
        let cell = match k {
            0 => FIRST,
            _ => {
                args.extend([Arg::Call(k - 1, 0), Arg::Call(k - 1, 1)]);
                NEXT
            }
        };
        calls.push(Call { cell, args, loss: None });
    }
    for t in 0..n {
        calls.push(Call {
            cell: TAG,
            args: vec![
                Arg::Call(t, 0),
                Arg::Call(n - 1 - t, 0),
                Arg::Data(one_hot(tags, sentence.tags[t])),
            ],
            loss: Some(1.0),
        });
    }
    calls
}

/// The batch of `sentences`, its loss the mean of the sentences' losses. A
/// sentence of no tokens is refused.
pub fn sentence_batch(sentences: &[Sentence], s: TaggerSizes) -> Result<Batch> {
    let mut batch = Batch::default();
    for (i, sentence) in sentences.iter().enumerate() {
        if sentence.words.is_empty() || sentence.words.len() != sentence.tags.len() {
            return Err(crate::error::Error::Values(format!(
                "sentence {i}: {} words and {} tags (it needs at least one word and a tag per word)",
                sentence.words.len(),
                sentence.tags.len()
            )));
        }
        batch.push_example(sentence_calls(sentence, s.tags));
    }
    Ok(batch.mean_loss())
}
