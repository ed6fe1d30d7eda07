//! What a stream case reads — a recorded fixture or a local source's records — and changed
//! copies of it, derived in code so no hand-edited "bad" fixture drifts from the real one.

use serde_json::Value;

use super::checks::{builder, serve};
use super::{BuildSource, SourceContract, StreamCase};
use crate::format::Fixture;
use crate::replay::FixtureServer;

/// The input of one stream case.
#[derive(Clone)]
pub(super) enum Data {
    /// Recorded exchanges, replayed over loopback.
    Fixture(Fixture),
    /// The records a local source reads.
    Records(Vec<Value>),
}

/// The case's own input, when it has one (a plain `local_stream` has none).
pub(super) fn of(case: &StreamCase) -> Option<Data> {
    match (&case.fixture, &case.records) {
        (Some((_, f)), _) => Some(Data::Fixture(f.clone())),
        (None, Some(r)) => Some(Data::Records(r.clone())),
        (None, None) => None,
    }
}

/// A source ready to run over `data`: its replay server (kept alive by the caller), the
/// server's base URL and the builder to call with it.
pub(super) struct Live {
    pub(super) server: Option<FixtureServer>,
    pub(super) url: String,
    pub(super) build: BuildSource,
}

/// Start what `data` needs for `case`.
pub(super) async fn live(c: &SourceContract, case: &StreamCase, data: Option<&Data>) -> Result<Live, String> {
    match data {
        Some(Data::Fixture(f)) => {
            let server = serve(c, Some(f)).await?.ok_or("no server")?;
            let url = server.base_url();
            Ok(Live { server: Some(server), url, build: builder(c, case).clone() })
        }
        Some(Data::Records(records)) => {
            let over = c.over.clone().ok_or("records without local_records")?;
            let (stream, records) = (case.name.clone(), records.clone());
            let build: BuildSource = std::sync::Arc::new(move |_: &str| over(&stream, &records));
            Ok(Live { server: None, url: String::new(), build })
        }
        None => Ok(Live { server: None, url: String::new(), build: builder(c, case).clone() }),
    }
}

/// The records of `data` a change may touch: for a fixture, the largest array of objects
/// in the first successful JSON response that has one (the page's items); for local
/// records, the records. `None` when there is no such array.
fn records_mut(data: &mut Data) -> Option<&mut Vec<Value>> {
    match data {
        Data::Records(r) => Some(r),
        Data::Fixture(f) => f
            .exchanges
            .iter_mut()
            .filter(|x| (200..300).contains(&x.response.status))
            .filter_map(|x| x.response.body.body.as_mut())
            .find_map(|body| {
                let pointer = largest_object_array(body, String::new())?.1;
                match body.pointer_mut(&pointer) {
                    Some(Value::Array(items)) => Some(items),
                    _ => None,
                }
            }),
    }
}

/// (length, JSON pointer) of the largest non-empty array of objects inside `v`.
fn largest_object_array(v: &Value, at: String) -> Option<(usize, String)> {
    let here = match v {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            Some((items.len(), at.clone()))
        }
        _ => None,
    };
    let inner = match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, x)| largest_object_array(x, format!("{at}/{i}")))
            .max_by_key(|(n, _)| *n),
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, x)| largest_object_array(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"))))
            .max_by_key(|(n, _)| *n),
        _ => None,
    };
    match (here, inner) {
        (Some(h), Some(i)) if i.0 > h.0 => Some(i),
        (Some(h), _) => Some(h),
        (None, i) => i,
    }
}

/// The first record of `data` (a copy), if any.
pub(super) fn first_record(data: &Data) -> Option<Value> {
    let mut copy = data.clone();
    records_mut(&mut copy).and_then(|r| r.first().cloned())
}

/// `data` with `field` of its first record changed to another JSON type (a string becomes
/// a number, a number a string), and a description of the change. `None` when the first
/// record has no string or number at `field`.
pub(super) fn with_type_changed(data: &Data, field: &str) -> Option<(Data, String)> {
    let mut copy = data.clone();
    let first = records_mut(&mut copy)?.first_mut()?.as_object_mut()?;
    let (new, what) = match first.get(field)? {
        Value::String(_) => (Value::from(42), "string → number"),
        Value::Number(n) => (Value::String(n.to_string()), "number → string"),
        _ => return None,
    };
    first.insert(field.to_owned(), new);
    Some((copy, what.to_owned()))
}

/// `data` with its first record made permanently bad: its primary-key field removed, or,
/// when the record does not carry that field under its own name, replaced by a string.
pub(super) fn with_first_record_broken(data: &Data, key_field: Option<&str>) -> Option<(Data, String)> {
    let mut copy = data.clone();
    let first = records_mut(&mut copy)?.first_mut()?;
    let removed = match (key_field, first.as_object_mut()) {
        (Some(k), Some(obj)) => obj.remove(k).map(|_| format!("primary key `{k}` removed")),
        _ => None,
    };
    let what = removed.unwrap_or_else(|| {
        *first = Value::String("contract: a record that is not an object".into());
        "replaced by a string".to_owned()
    });
    Some((copy, what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Body, Exchange, RecordedRequest, RecordedResponse};
    use serde_json::json;

    fn fixture(bodies: &[(u16, Value)]) -> Data {
        let exchanges = bodies
            .iter()
            .map(|(status, body)| {
                let mut response = RecordedResponse::new(*status);
                response.body = Body::json(body.clone());
                let request = RecordedRequest {
                    method: "GET".into(),
                    path: "/x".into(),
                    query: vec![],
                    headers: Default::default(),
                    body: Body::default(),
                };
                Exchange { request, response }
            })
            .collect();
        Data::Fixture(Fixture::new(exchanges))
    }

    #[test]
    fn the_items_array_of_the_first_successful_page_is_changed() {
        let data = fixture(&[
            (500, json!([{ "id": 0, "name": "error page" }])),
            (
                200,
                json!({ "meta": { "links": [{ "rel": "next" }] }, "data": [{ "id": 1, "name": "a" }, { "id": 2, "name": "b" }] }),
            ),
        ]);
        assert_eq!(first_record(&data), Some(json!({ "id": 1, "name": "a" })));
        let (changed, what) = with_type_changed(&data, "name").unwrap();
        assert_eq!(what, "string → number");
        assert_eq!(first_record(&changed), Some(json!({ "id": 1, "name": 42 })));
        let (changed, _) = with_type_changed(&data, "id").unwrap();
        assert_eq!(first_record(&changed), Some(json!({ "id": "1", "name": "a" })));
        assert!(with_type_changed(&data, "missing").is_none());
        let (broken, what) = with_first_record_broken(&data, Some("id")).unwrap();
        assert_eq!((first_record(&broken), what.as_str()), (Some(json!({ "name": "a" })), "primary key `id` removed"));
        let (broken, _) = with_first_record_broken(&Data::Records(vec![json!({ "x": 1 })]), Some("id")).unwrap();
        assert_eq!(first_record(&broken), Some(json!("contract: a record that is not an object")));
    }
}
