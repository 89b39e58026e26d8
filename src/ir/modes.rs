//! Choices that more than one stage reads: which run is priced, predicted
//! and executed ([`Run`]: the cost model, the memory model, the batcher), and
//! what each output of a batched program is ([`BatchReduce`]: the batcher,
//! the chunked plans, the ONNX export's dynamic batch).

use serde::Serialize;

/// Which run to predict (and to price).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Run {
    /// The forward pass only.
    Eval,
    /// The forward pass and the backward sweep (a gradient).
    Grad,
}

/// What each output of the batched program is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchReduce {
    /// The mean over the batch (the mini-batch loss).
    Mean,
    /// The sum over the batch.
    Sum,
    /// The per-example outputs stacked along a new leading axis.
    None,
}

/// The element type values are computed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats (ONNX `FLOAT`), what most engines run fastest.
    #[default]
    F32,
    /// 64-bit floats (ONNX `DOUBLE`), as the interpreter computes by default.
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}
