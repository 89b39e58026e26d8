//! The N-ary (binary) Tree-LSTM of Tai, Socher and Manning (2015) over a
//! constituency tree, as three cells: a leaf reads its word's embedding
//! (`i, o, u` gates: `c = i * u`, `h = o * tanh c`), an inner node reads its
//! children's `h` and `c` (one product of the stacked gate weights with
//! `[h_l; h_r]`, a forget gate per child: `c = i * u + f_l * c_l + f_r * c_r`),
//! and the root's head gives the softmax cross-entropy of the sentence's
//! class. Each cell returns both `h` and `c` (the builder's cells return
//! several values).

use super::data::{LabelledTree, Tree};
use super::graph::{Arg, Batch, Call, Cell, Model};
use crate::error::Result;
use crate::front::ProgramBuilder;
use egg::Id;

/// The sizes of the model.
#[derive(Clone, Copy, Debug)]
pub struct TreeLstmSizes {
    /// Width of `h` and `c`.
    pub hidden: usize,
    /// Width of a word's embedding.
    pub embed: usize,
    /// Rows of the embedding matrix.
    pub vocab: usize,
    /// Sentiment classes.
    pub classes: usize,
}

impl TreeLstmSizes {
    /// Hidden 128, embeddings of 128 from 1,000 words, SST's 5 classes.
    pub fn sst() -> Self {
        TreeLstmSizes {
            hidden: 128,
            embed: 128,
            vocab: 1000,
            classes: 5,
        }
    }
}

/// Cell indices.
const LEAF: usize = 0;
const NODE: usize = 1;
const HEAD: usize = 2;

/// The gates from their stacked pre-activations (each `width` wide): the
/// first `sigmoids` through one sigmoid, the last through tanh. One kernel
/// each, not one per gate: the gates of a cell are one batched op already.
pub(crate) fn gates(b: &mut ProgramBuilder, stacked: Id, sigmoids: usize, width: usize) -> Result<Vec<Id>> {
    let pre = b.slice(stacked, 0, 0, sigmoids * width)?;
    let squashed = b.sigmoid(pre)?;
    let mut out = vec![];
    for k in 0..sigmoids {
        out.push(b.slice(squashed, 0, k * width, (k + 1) * width)?);
    }
    let last = b.slice(stacked, 0, sigmoids * width, (sigmoids + 1) * width)?;
    out.push(b.tanh(last)?);
    Ok(out)
}

fn width(b: &ProgramBuilder, id: Id) -> usize {
    b.shape(id).dims()[0]
}

fn leaf(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let (x, w, bias) = (args[0], params[0], params[1]);
    let wx = b.matmul(w, x)?;
    let stacked = b.add(wx, bias)?;
    let g = gates(b, stacked, 2, width(b, stacked) / 3)?;
    let (i, o, u) = (g[0], g[1], g[2]);
    let c = b.mul(i, u)?;
    let tc = b.tanh(c)?;
    Ok(vec![b.mul(o, tc)?, c])
}

fn node(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let (hl, cl, hr, cr, u_w, bias) = (args[0], args[1], args[2], args[3], params[0], params[1]);
    let hh = b.concat(&[hl, hr], 0)?;
    let uh = b.matmul(u_w, hh)?;
    let stacked = b.add(uh, bias)?;
    let g = gates(b, stacked, 4, width(b, stacked) / 5)?;
    let (i, fl, fr, o, u) = (g[0], g[1], g[2], g[3], g[4]);
    let iu = b.mul(i, u)?;
    let flc = b.mul(fl, cl)?;
    let frc = b.mul(fr, cr)?;
    let c = b.add(iu, flc)?;
    let c = b.add(c, frc)?;
    let tc = b.tanh(c)?;
    Ok(vec![b.mul(o, tc)?, c])
}

/// Softmax cross-entropy of `W h + b` against the one-hot `y`:
/// `logsumexp(z) - sum(z * y)`. Shared with the tagger.
pub(crate) fn head(b: &mut ProgramBuilder, args: &[Id], params: &[Id]) -> Result<Vec<Id>> {
    let (h, y, w, bias) = (args[0], args[1], params[0], params[1]);
    let wh = b.matmul(w, h)?;
    let z = b.add(wh, bias)?;
    let lse = b.logsumexp(z)?;
    let zy = b.mul(z, y)?;
    let picked = b.sum(zy)?;
    Ok(vec![b.sub(lse, picked)?])
}

/// The Tree-LSTM model.
pub fn tree_lstm(s: TreeLstmSizes) -> Model {
    let h = s.hidden;
    Model {
        params: vec![
            ("w_leaf", vec![3 * h, s.embed]),
            ("b_leaf", vec![3 * h]),
            ("u_node", vec![5 * h, 2 * h]),
            ("b_node", vec![5 * h]),
            ("w_out", vec![s.classes, h]),
            ("b_out", vec![s.classes]),
        ],
        embedding: ("embedding", [s.vocab, s.embed]),
        cells: vec![
            Cell {
                name: "leaf",
                args: vec![vec![s.embed]],
                params: vec!["w_leaf", "b_leaf"],
                outputs: 2,
                body: leaf,
            },
            Cell {
                name: "node",
                args: vec![vec![h]; 4],
                params: vec!["u_node", "b_node"],
                outputs: 2,
                body: node,
            },
            Cell {
                name: "root_loss",
                args: vec![vec![h], vec![s.classes]],
                params: vec!["w_out", "b_out"],
                outputs: 1,
                body: head,
            },
        ],
    }
}

/// A one-hot vector of `n` with a 1 at `k`.
pub(crate) fn one_hot(n: usize, k: usize) -> Vec<f64> {
    (0..n).map(|i| if i == k { 1.0 } else { 0.0 }).collect()
}

/// The calls of one tree: children before parents (post-order), the root's loss head last.
fn tree_calls(t: &LabelledTree, classes: usize) -> Vec<Call> {
    let mut calls: Vec<Call> = vec![];
    // Post-order without recursion: (subtree, children done).
    let mut stack: Vec<(&Tree, bool)> = vec![(&t.tree, false)];
    let mut done: Vec<usize> = vec![];
    while let Some((tree, expanded)) = stack.pop() {
        match (tree, expanded) {
            (Tree::Leaf(word), _) => {
                calls.push(Call {
                    cell: LEAF,
                    args: vec![Arg::Lookup(*word)],
                    loss: None,
                });
                done.push(calls.len() - 1);
            }
            (Tree::Node(l, r), false) => stack.extend([(tree, true), (&**r, false), (&**l, false)]),
            (Tree::Node(..), true) => {
                let right = done.pop().expect("right child done");
                let left = done.pop().expect("left child done");
                calls.push(Call {
                    cell: NODE,
                    args: vec![
                        Arg::Call(left, 0),
                        Arg::Call(left, 1),
                        Arg::Call(right, 0),
                        Arg::Call(right, 1),
                    ],
                    loss: None,
                });
                done.push(calls.len() - 1);
            }
        }
    }
    let root = calls.len() - 1;
    calls.push(Call {
        cell: HEAD,
        args: vec![Arg::Call(root, 0), Arg::Data(one_hot(classes, t.label))],
        loss: Some(1.0),
    });
    calls
}

/// The batch of `trees`, its loss the mean of the trees' losses.
pub fn tree_batch(trees: &[LabelledTree], s: TreeLstmSizes) -> Batch {
    let mut batch = Batch::default();
    for t in trees {
        batch.push_example(tree_calls(t, s.classes));
    }
    batch.mean_loss()
}
