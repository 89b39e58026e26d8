//! Values as JSON: nested arrays for tensors, a plain number for a scalar.

use crate::error::{Error, Result};
use crate::ir::Scalar;
use crate::runtime::interp::Values;
use crate::runtime::kernels::Tensor;
use ndarray::IxDyn;
use serde_json::Value;

/// A tensor from nested JSON arrays of numbers; `what` names it in errors.
pub fn tensor_from_json<T: Scalar>(what: &str, json: &Value) -> Result<Tensor<T>> {
    let mut dims = Vec::new();
    let mut probe = json;
    while let Value::Array(items) = probe {
        dims.push(items.len());
        match items.first() {
            Some(first) => probe = first,
            None => return Err(Error::Values(format!("{what}: empty arrays are not allowed"))),
        }
    }
    let mut flat = Vec::with_capacity(dims.iter().product());
    flatten(what, json, &dims, &mut flat)?;
    Ok(Tensor::from_shape_vec(IxDyn(&dims), flat).expect("flattened to the probed shape"))
}

fn flatten<T: Scalar>(what: &str, json: &Value, dims: &[usize], out: &mut Vec<T>) -> Result<()> {
    match (json, dims.split_first()) {
        (Value::Number(n), None) => {
            out.push(T::of(n.as_f64().unwrap_or(f64::NAN)));
            Ok(())
        }
        (Value::Array(items), Some((&d, rest))) if items.len() == d => {
            items.iter().try_for_each(|item| flatten(what, item, rest, out))
        }
        _ => Err(Error::Values(format!(
            "{what}: not a rectangular array of numbers (nested lists of equal lengths)"
        ))),
    }
}

/// A tensor as nested JSON arrays (a plain number for a scalar). Non-finite
/// numbers become `null`, as JSON has no NaN.
pub fn tensor_to_json<T: Scalar>(t: &Tensor<T>) -> Value {
    fn go<T: Scalar>(t: ndarray::ArrayViewD<T>) -> Value {
        if t.ndim() == 0 {
            let v = t.first().unwrap().to_f64().unwrap_or(f64::NAN);
            return serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
        }
        Value::Array(t.outer_iter().map(go).collect())
    }
    go(t.view())
}

/// Values by name from a JSON object of tensors.
pub fn values_from_json<T: Scalar>(what: &str, json: &Value) -> Result<Values<T>> {
    let Value::Object(map) = json else {
        return Err(Error::Values(format!("{what}: expected a JSON object of name: array")));
    };
    map.iter()
        .map(|(name, v)| Ok((name.clone(), tensor_from_json(&format!("{what}: `{name}`"), v)?)))
        .collect()
}

/// A JSON object of named tensors, in the given order.
pub fn named_to_json<T: Scalar>(named: &[(String, Tensor<T>)]) -> Value {
    Value::Object(named.iter().map(|(n, t)| (n.clone(), tensor_to_json(t))).collect())
}
