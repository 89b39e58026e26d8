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
            let v = n.as_f64().unwrap_or(f64::NAN);
            let converted = T::of(v);
            if v.is_finite() && !converted.is_finite() {
                return Err(Error::Values(format!(
                    "{what}: {v:e} is too large for the element type (largest {:e})",
                    T::max_value().to_f64().unwrap_or(f64::MAX)
                )));
            }
            out.push(converted);
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

/// Parses JSON text like `serde_json::from_str`, but a duplicate key in any
/// object is an error naming it (serde_json would silently keep the last value).
pub fn json_from_str(text: &str) -> std::result::Result<Value, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
    struct Strict;
    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_unit<E>(self) -> std::result::Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Strict)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
            let mut object = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if object.contains_key(&key) {
                    return Err(A::Error::custom(format!("duplicate key `{key}`")));
                }
                let value = map.next_value_seed(Strict)?;
                object.insert(key, value);
            }
            Ok(Value::Object(object))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
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
