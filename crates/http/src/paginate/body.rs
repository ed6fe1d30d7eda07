//! Body-cursor pagination's request: the cursor set in the next request's JSON body (a POST
//! listing such as HubSpot's search), the rest of the body as the first request sent it.

use serde_json::Value;

use crate::request::Request;

/// The template with `field` of its JSON object body set to `value` (an empty object when it
/// has no body); a body that is not a JSON object makes the request fail before it is sent.
pub(super) fn with_body_field(mut t: Request, field: &str, value: &str) -> Request {
    let mut body = match t.body.as_deref().map(serde_json::from_slice::<Value>) {
        None => Value::Object(serde_json::Map::new()),
        Some(Ok(v)) => v,
        Some(Err(_)) => Value::Null,
    };
    match body.as_object_mut() {
        Some(obj) => {
            obj.insert(field.to_owned(), Value::String(value.to_owned()));
            t.json(&body)
        }
        None => {
            t.error =
                Some(format!("body-cursor pagination: the request body is not a JSON object to set `{field}` in"));
            t
        }
    }
}
