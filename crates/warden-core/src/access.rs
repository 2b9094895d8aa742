//! An access recorded on a caller's word (the best-practices guide's
//! `SecurityAuditLogger.log_access(user_id, resource, action, result, metadata)`): the
//! entry it becomes, the same from the Python SDK through a local writer and from a
//! remote client through `warden serve`.

use crate::entry::Event;
use serde_json::{Map, Value};

/// `result` values recorded as an allowed access (compared case-insensitively);
/// anything else is a denial.
pub const GRANTED: [&str; 7] = [
    "success",
    "succeeded",
    "allow",
    "allowed",
    "granted",
    "ok",
    "permit",
];

/// The entry kind of an allowed access, and of a refused one (as the registry records
/// them, and as reports count them).
pub const ACCESS: &str = "model.access";
pub const DENIED: &str = "model.denied";

/// The kind and event of one access. `metadata`, when an object with members, is kept
/// in the details beside `result`. Errors name the empty field.
pub fn event(
    user_id: String,
    resource: String,
    action: String,
    result: String,
    metadata: Option<Value>,
) -> Result<(&'static str, Event), String> {
    for (name, v) in [
        ("user_id", &user_id),
        ("resource", &resource),
        ("action", &action),
        ("result", &result),
    ] {
        if v.is_empty() {
            return Err(format!("{name} must not be empty"));
        }
    }
    let granted = GRANTED.iter().any(|g| g.eq_ignore_ascii_case(&result));
    let mut details = Map::new();
    details.insert("result".into(), Value::String(result));
    match metadata {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) if o.is_empty() => {}
        Some(m @ Value::Object(_)) => {
            details.insert("metadata".into(), m);
        }
        Some(_) => return Err("metadata must be an object".into()),
    }
    let ev = Event {
        user: Some(user_id),
        model: Some(resource),
        action: Some(action),
        decision: Some(if granted { "allow" } else { "deny" }.into()),
        details: Some(Value::Object(details)),
        ..Event::default()
    };
    Ok((if granted { ACCESS } else { DENIED }, ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_choose_the_kind_and_empty_fields_are_refused() {
        let e = |r: &str| event("u".into(), "m".into(), "load".into(), r.into(), None);
        assert_eq!(e("Success").map(|x| x.0), Ok(ACCESS));
        assert_eq!(e("denied").map(|x| x.0), Ok(DENIED));
        assert!(e("").is_err());
        let with = event(
            "u".into(),
            "m".into(),
            "load".into(),
            "ok".into(),
            Some(serde_json::json!({"ip": "10.0.0.1"})),
        );
        let details = with.map(|(_, ev)| ev.details);
        assert_eq!(
            details,
            Ok(Some(
                serde_json::json!({"result": "ok", "metadata": {"ip": "10.0.0.1"}})
            ))
        );
        assert!(
            event(
                "u".into(),
                "m".into(),
                "a".into(),
                "ok".into(),
                Some(1.into())
            )
            .is_err()
        );
    }
}
