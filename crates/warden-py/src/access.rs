//! Access events built from Python objects directly: no JSON text in between, which
//! cost more than everything else on the Python side of `log_access_batch`.

use crate::errors::InvalidInput;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Value};
use warden_core::entry::Event;

pub use warden_core::access::GRANTED;

/// Deepest nesting of metadata accepted.
const MAX_DEPTH: usize = 32;

/// A required, non-empty string argument.
pub fn text(name: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = v.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be str, not {}",
            v.get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string())
        ))
    })?;
    let s = s.to_cow()?.into_owned();
    if s.is_empty() {
        return Err(InvalidInput::new_err(format!("{name} must not be empty")));
    }
    Ok(s)
}

/// A Python value as JSON: None, bool, int, float (finite), str, and lists, tuples and
/// dicts (str keys) of them.
pub fn json(v: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(InvalidInput::new_err("metadata is nested too deeply"));
    }
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.cast::<PyInt>().is_ok() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(i.into());
        }
        return v
            .extract::<u64>()
            .map(Into::into)
            .map_err(|_| InvalidInput::new_err("metadata holds an integer beyond 64 bits"));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return serde_json::Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| InvalidInput::new_err("metadata holds a NaN or infinite float"));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut m = Map::new();
        for (k, x) in d.iter() {
            let k = k
                .cast::<PyString>()
                .map_err(|_| InvalidInput::new_err("metadata keys must be str"))?;
            m.insert(k.to_cow()?.into_owned(), json(&x, depth + 1)?);
        }
        return Ok(Value::Object(m));
    }
    if let Ok(l) = v.cast::<PyList>() {
        return l.iter().map(|x| json(&x, depth + 1)).collect();
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        return t.iter().map(|x| json(&x, depth + 1)).collect();
    }
    Err(InvalidInput::new_err(format!(
        "metadata holds a {}, which is not JSON",
        v.get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string())
    )))
}

/// The entry of one access: its kind and event (see ARCHITECTURE.md, "Python SDK").
pub fn event(
    user_id: &Bound<'_, PyAny>,
    resource: &Bound<'_, PyAny>,
    action: &Bound<'_, PyAny>,
    result: &Bound<'_, PyAny>,
    metadata: Option<&Bound<'_, PyAny>>,
) -> PyResult<(&'static str, Event)> {
    let result = text("result", result)?;
    let metadata = match metadata.filter(|m| !m.is_none()) {
        Some(m) if m.cast::<PyDict>().is_err() => {
            return Err(PyTypeError::new_err("metadata must be a dict"));
        }
        Some(m) => Some(json(m, 0)?),
        None => None,
    };
    warden_core::access::event(
        text("user_id", user_id)?,
        text("resource", resource)?,
        text("action", action)?,
        result,
        metadata,
    )
    .map_err(InvalidInput::new_err)
}

/// The events of a batch: each item a dict with `user_id`, `resource`, `action`,
/// `result` and optional `metadata`.
pub fn events(items: &Bound<'_, PyAny>) -> PyResult<Vec<(&'static str, Event)>> {
    let py = items.py();
    let mut out = Vec::new();
    for (i, item) in items.try_iter()?.enumerate() {
        let item = item?;
        let d = item
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err(format!("event {i} must be a dict")))?;
        let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
            d.get_item(k)?
                .ok_or_else(|| InvalidInput::new_err(format!("event {i} has no '{k}'")))
        };
        let meta = d.get_item("metadata")?;
        out.push(
            event(
                &get("user_id")?,
                &get("resource")?,
                &get("action")?,
                &get("result")?,
                meta.as_ref(),
            )
            .map_err(|e| {
                let msg = e.value(py).to_string();
                if e.is_instance_of::<PyTypeError>(py) {
                    PyTypeError::new_err(format!("event {i}: {msg}"))
                } else {
                    InvalidInput::new_err(format!("event {i}: {msg}"))
                }
            })?,
        );
    }
    Ok(out)
}
