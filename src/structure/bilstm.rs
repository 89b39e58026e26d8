//! A BiLSTM tagger: an LSTM reads the sentence left to right, another right
//! to left, and each token's tag is predicted from both states
//! (`W [h_fwd; h_bwd] + b`, softmax cross-entropy); a sentence's loss is the
//! sum over its tokens. Cells: an LSTM's first step (no state before it) and
//! its next steps, per direction, and the tag head.

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

/// The LSTM step from the gates' pre-activations: `i, f, o, u`; `c` is
/// `i * u` plus `f * c_prev` when there is a previous state.
fn lstm_from_gates(b: &mut ProgramBuilder, gates: Id, c_prev: Option<Id>) -> Result<Vec<Id>> {
    let g = super::treelstm::gates(b, gates, 3, b.shape(gates).dims()[0] / 4)?;
    let (i, f, o, u) = (g[0], g[1], g[2], g[3]);
    let mut c = b.mul(i, u)?;
    if let Some(c_prev) = c_prev {
        let fc = b.mul(f, c_prev)?;
        c = b.add(c, fc)?;
    }
    let tc = b.tanh(c)?;
    Ok(vec![b.mul(o, tc)?, c])
}

fn first_step(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let (x, wx, bias) = (args[0], params[0], params[1]);
    let g = b.matmul(wx, x)?;
    let gates = b.add(g, bias)?;
    lstm_from_gates(b, gates, None)
}

fn next_step(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let (x, h, c, wx, wh, bias) = (args[0], args[1], args[2], params[0], params[1], params[2]);
    let gx = b.matmul(wx, x)?;
    let gh = b.matmul(wh, h)?;
    let g = b.add(gx, gh)?;
    let gates = b.add(g, bias)?;
    lstm_from_gates(b, gates, Some(c))
}

fn tag_head(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let both = b.concat(&[args[0], args[1]], 0)?;
    head(b, &[both, args[2]], params)
}

/// Cell indices: forward first and next, backward first and next, the head.
const FWD_FIRST: usize = 0;
const FWD_NEXT: usize = 1;
const BWD_FIRST: usize = 2;
const BWD_NEXT: usize = 3;
const TAG: usize = 4;

/// The tagger.
pub fn bilstm_tagger(s: TaggerSizes) -> Model {
    let (h, e) = (s.hidden, s.embed);
    let first = |name, wx, bias| Cell {
        name,
        args: vec![vec![e]],
        params: vec![wx, bias],
        outputs: 2,
        body: first_step,
    };
    let next = |name, wx, wh, bias| Cell {
        name,
        args: vec![vec![e], vec![h], vec![h]],
        params: vec![wx, wh, bias],
        outputs: 2,
        body: next_step,
    };
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
            first("fwd_first", "wx_fwd", "b_fwd"),
            next("fwd_next", "wx_fwd", "wh_fwd", "b_fwd"),
            first("bwd_first", "wx_bwd", "b_bwd"),
            next("bwd_next", "wx_bwd", "wh_bwd", "b_bwd"),
            Cell {
                name: "tag_loss",
                args: vec![vec![h], vec![h], vec![s.tags]],
                params: vec!["w_tag", "b_tag"],
                outputs: 1,
                body: tag_head,
            },
        ],
    }
}

/// One direction's steps over `order` (token positions); returns each token's step call.
fn direction(
    calls: &mut Vec<Call>,
    words: &[usize],
    order: impl Iterator<Item = usize>,
    cells: (usize, usize),
) -> Vec<usize> {
    let mut at = vec![0; words.len()];
    let mut prev: Option<usize> = None;
    for t in order {
        let x = Arg::Lookup(words[t]);
        let call = match prev {
            None => Call {
                cell: cells.0,
                args: vec![x],
                loss: None,
            },
            Some(p) => Call {
                cell: cells.1,
                args: vec![x, Arg::Call(p, 0), Arg::Call(p, 1)],
                loss: None,
            },
        };
        calls.push(call);
        prev = Some(calls.len() - 1);
        at[t] = calls.len() - 1;
    }
    at
}

/// The calls of one sentence (at least one token).
fn sentence_calls(sentence: &Sentence, tags: usize) -> Vec<Call> {
    let n = sentence.words.len();
    let mut calls = vec![];
    let fwd = direction(&mut calls, &sentence.words, 0..n, (FWD_FIRST, FWD_NEXT));
    let bwd = direction(&mut calls, &sentence.words, (0..n).rev(), (BWD_FIRST, BWD_NEXT));
    for t in 0..n {
        calls.push(Call {
            cell: TAG,
            args: vec![
                Arg::Call(fwd[t], 0),
                Arg::Call(bwd[t], 0),
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
