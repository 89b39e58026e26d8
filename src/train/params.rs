//! The params of a program: drawn at random from a seed, read from `.npz`
//! (one array per param, by name: what training writes) or from the JSON
//! values format, and written as `.npz`.

use crate::error::{Error, Result};
use crate::ir::Program;
use crate::runtime::{json_from_str, values_from_json, Rng, Tensor, Values};
use crate::train::data::read_npz;
use std::path::Path;

/// Params drawn from `seed`: a param of rank 2 or more, `[.., fan_out,
/// fan_in]`, uniform in ±sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio),
/// so that tanh layers start neither saturated nor flat; the others (biases) zero.
pub fn random_params(program: &Program, seed: u64) -> Values<f64> {
    let mut rng = Rng::new(seed);
    program
        .params
        .iter()
        .map(|d| {
            let dims = d.shape.dims();
            let value = match dims.len() {
                0 | 1 => Tensor::zeros(ndarray::IxDyn(dims)),
                rank => {
                    let limit = (6.0 / (dims[rank - 1] + dims[rank - 2]) as f64).sqrt();
                    rng.tensor(dims, -limit, limit)
                }
            };
            (d.name.clone(), value)
        })
        .collect()
}

/// Params from `path` (`.npz`, or `.json` in the values format), checked
/// against `program`: every param present with its shape, finite, and no other names.
pub fn read_params(program: &Program, path: &Path) -> Result<Values<f64>> {
    let source = path.display().to_string();
    let io = |e: std::io::Error| Error::Io(format!("{source}: {e}"));
    let values = match path.extension().and_then(|e| e.to_str()) {
        Some("npz") => read_npz(&source, std::fs::File::open(path).map_err(io)?)?,
        Some("json") => {
            let text = std::fs::read_to_string(path).map_err(io)?;
            let json = json_from_str(&text).map_err(|e| Error::Values(format!("{source}: invalid JSON: {e}")))?;
            values_from_json(&source, &json)?
        }
        _ => {
            return Err(Error::Unsupported(format!(
                "{source}: params must be .npz (one array per param) or .json (the values format)"
            )))
        }
    };
    check_params(program, &source, values)
}

/// `values` checked to be exactly `program`'s params, each of its shape and finite.
pub fn check_params(program: &Program, source: &str, mut values: Values<f64>) -> Result<Values<f64>> {
    let mut params = Values::new();
    for d in &program.params {
        let Some(value) = values.remove(&d.name) else {
            return Err(Error::Values(format!(
                "{source}: no value for the param `{}: {}`",
                d.name, d.shape
            )));
        };
        if value.shape() != d.shape.dims() {
            return Err(Error::Values(format!(
                "{source}: `{}` has shape {:?}; the param is `{}: {}`",
                d.name,
                value.shape(),
                d.name,
                d.shape
            )));
        }
        if value.iter().any(|v| !v.is_finite()) {
            return Err(Error::Values(format!(
                "{source}: `{}` holds a NaN or an infinity",
                d.name
            )));
        }
        params.insert(d.name.clone(), value);
    }
    if let Some(extra) = values.keys().min() {
        return Err(Error::Values(format!(
            "{source}: `{extra}` is not a param of the program (its params are {})",
            program
                .params
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(params)
}

/// Writes `params` to `path` as an uncompressed `.npz`, in `program`'s param order.
pub fn write_params(program: &Program, params: &Values<f64>, path: &Path) -> Result<()> {
    let io = |e: &dyn std::fmt::Display| Error::Io(format!("{}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(|e| io(&e))?;
    let mut npz = ndarray_npy::NpzWriter::new(file);
    for d in &program.params {
        npz.add_array(d.name.as_str(), &params[&d.name]).map_err(|e| io(&e))?;
    }
    npz.finish().map_err(|e| io(&e))?;
    Ok(())
}
