//! Examples that differ in structure (issue 23): a batch of different trees
//! or sentences, each example its own graph, batched together.
//!
//! - [`data`]: seeded generators of SST-like trees and WikiNER-like sentences.
//! - [`graph`]: a model as cells (the `fn`s whose calls batch), a batch as
//!   calls of cells, and the batch written as one program (with the
//!   [`ProgramBuilder`](crate::front::ProgramBuilder)), its loss the mean of
//!   the examples' losses: what the interpreter runs unbatched and the
//!   general autobatcher ([`crate::egraph::autobatch`]) batches.
//! - [`treelstm`], [`bilstm`]: the N-ary Tree-LSTM and the BiLSTM tagger.
//! - [`fast`]: each cell batched once by the e-graph and cached, and a
//!   per-batch schedule by depth with gathers and scatters (TensorFlow Fold's
//!   way): the per-batch work is linear in the batch, with no e-graph.
//! - [`pipeline`]: a training step (build, batch, forward and backward, SGD)
//!   both ways, timed by phase.
//!
//! A stage at the level of `train` (it imports the front end, the e-graph
//! and the runtime).

pub mod bilstm;
pub mod data;
pub mod fast;
pub mod graph;
pub mod pipeline;
pub mod treelstm;

pub use bilstm::{bilstm_tagger, sentence_batch, TaggerSizes};
pub use data::{random_sentence, random_tree, sst_like_trees, wikiner_like_sentences, LabelledTree, Sentence, Tree};
pub use fast::{FastPath, Outcome, Plan};
pub use graph::{batch_program, lookup_gradient, Arg, Batch, Call, Cell, Model};
pub use pipeline::{init_params, per_example_mean_gradient, unbatched_gradient, Phases};
pub use treelstm::{tree_batch, tree_lstm, TreeLstmSizes};
