//! The REST sink: mapped records to an API, once each.
//!
//! `create` streams POST each new record with the engine's deterministic idempotency key
//! (same record content, same key, on every retry and rerun) and keep the id the API
//! returns in the ledger; a later change to the record is sent to `update_path` with that
//! id instead of creating again. `upsert` streams PUT to a path built from the record, which
//! is idempotent by itself, one record or one array batch per request.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use dovetail_core::{
    Batch, BuildCx, CreateHint, Cx, Error, ErrorKind, FieldPath, Record, Sink, SinkConnector, SinkStream, WriteMode,
    WriteReport,
};
use dovetail_http::{HttpClient, Method, Request};
use serde_json::Value;

use crate::config::{BodyEncoding, RestSinkConfig, RestSinkStream, SinkMode};

/// Writes each stream to a JSON API endpoint (`kind = "rest"` as a sink).
#[derive(Debug, Clone)]
pub struct RestSink {
    client: HttpClient,
    streams: Arc<BTreeMap<String, RestSinkStream>>,
    idempotency_header: String,
    /// What `check` sends `GET` to: `check_path`, else the base URL.
    check_url: String,
}

impl SinkConnector for RestSink {
    const KIND: &'static str = crate::SINK_KIND;
    type Config = RestSinkConfig;

    fn build(config: RestSinkConfig, cx: &BuildCx) -> Result<Self, Error> {
        for (name, s) in &config.streams {
            let at = |what: &str| Error::config(format!("sink stream `{name}`: {what}"));
            if !s.path.starts_with('/') {
                return Err(at("`path` must start with `/` (it is joined to `base_url`)"));
            }
            if s.mode == SinkMode::Create && s.batch.is_some() {
                return Err(at("`batch` needs `mode = \"upsert\"`: a create must read back one id per record"));
            }
            if s.encoding == BodyEncoding::Form && s.batch.is_some() {
                return Err(at("`encoding = \"form\"` sends one record per request: leave out `batch`"));
            }
            if let Some(m) = &s.update_method {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| at(&format!("`update_method` `{m}` is not an HTTP method")))?;
            }
            if s.mode == SinkMode::Upsert && s.batch.is_none() && !s.path.contains('{') {
                return Err(at(
                    "an upsert path needs `{field}` placeholders naming the record (e.g. `/v1/items/{id}`), or `batch` for an array endpoint",
                ));
            }
        }
        let client = crate::client::build(
            crate::SINK_KIND,
            &config.base_url,
            config.auth.as_ref(),
            config.api_version.as_ref(),
            &config.http,
            Some(&config.idempotency_header),
            cx,
        )?;
        let check_url = config.check_path.clone().unwrap_or_else(|| config.base_url.clone());
        client
            .check_url(&check_url, "`check_path`")
            .map_err(|e| Error::config(format!("`check_path`: {}", e.message())).with_hint(e.next_step()))?;
        Ok(RestSink {
            client,
            streams: Arc::new(config.streams),
            idempotency_header: config.idempotency_header,
            check_url,
        })
    }
}

/// Outcome of one record's (or one array batch's) request.
enum Sent {
    Ok(Option<String>),
    Rejected(Error),
}

impl RestSink {
    fn stream(&self, name: &str) -> Result<&RestSinkStream, Error> {
        self.streams.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.streams.keys().map(String::as_str).collect();
            Error::config(format!(
                "the rest sink has no `streams.{name}` entry (configured: {}); add one to say where `{name}` goes",
                known.join(", ")
            ))
        })
    }

    async fn send_one(&self, cfg: &RestSinkStream, record: &Record, hint: Option<&CreateHint>) -> Result<Sent, Error> {
        let body = match &cfg.body {
            Some(t) => render(t, &record.data),
            None => record.data.clone(),
        };
        // A record that makes no form (not an object) is refused alone, not the batch.
        let form = match cfg.encoding {
            BodyEncoding::Json => None,
            BodyEncoding::Form => match dovetail_http::form_encode(&body) {
                Ok(text) => Some(text),
                Err(e) => return Ok(Sent::Rejected(e)),
            },
        };
        let with_body = |r: Request| match &form {
            None => r.json(&body),
            Some(text) => r.body(text.clone()).header("content-type", dovetail_http::FORM_CONTENT_TYPE),
        };
        let req = match (cfg.mode, hint) {
            (SinkMode::Create, Some(CreateHint { dest_id: Some(id), .. })) => {
                let path = cfg.update_path.clone().unwrap_or_else(|| format!("{}/{{dest_id}}", cfg.path));
                let method = cfg.update_method.as_deref().unwrap_or("PUT").to_ascii_uppercase();
                let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::PUT);
                with_body(Request::new(method, path.replace("{dest_id}", &crate::source::encode_segment(id))))
            }
            (SinkMode::Create, hint) => {
                let key = hint
                    .map(|h| h.idempotency_key.as_str())
                    .ok_or_else(|| Error::internal("a create-mode write came without its idempotency key"))?;
                with_body(Request::post(cfg.path.clone())).header(&self.idempotency_header, key)
            }
            (SinkMode::Upsert, _) => with_body(Request::new(Method::PUT, fill_path(&cfg.path, &record.data)?)),
        };
        match self.client.send(req).await {
            Ok(resp) => {
                let id = match cfg.mode {
                    SinkMode::Create => match hint.and_then(|h| h.dest_id.clone()) {
                        Some(id) => Some(id),
                        None => {
                            let v: Value = resp.json().unwrap_or(Value::Null);
                            match v.pointer(&cfg.id_pointer) {
                                Some(Value::String(s)) => Some(s.clone()),
                                Some(Value::Number(n)) => Some(n.to_string()),
                                _ => {
                                    return Ok(Sent::Rejected(Error::data(format!(
                                        "the API created the record but its response has no id at `{}`",
                                        cfg.id_pointer
                                    ))));
                                }
                            }
                        }
                    },
                    SinkMode::Upsert => None,
                };
                Ok(Sent::Ok(id))
            }
            Err(e) if e.kind().disposition().rejects_record() => Ok(Sent::Rejected(e)),
            Err(e) => Err(e),
        }
    }
}

/// The path with `{field}` placeholders filled from the record.
fn fill_path(path: &str, data: &Value) -> Result<String, Error> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push_str(&rest[..open]);
        let field = &rest[open + 1..open + close];
        let v = FieldPath::new(field)
            .get(data)
            .filter(|v| !v.is_null())
            .ok_or_else(|| Error::data(format!("the record has no `{field}` for the path `{path}`")))?;
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&crate::source::encode_segment(&text));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The body template with `"{{field}}"` strings replaced by the record's values.
pub(crate) fn render(template: &Value, data: &Value) -> Value {
    match template {
        Value::String(s) => {
            let trimmed = s.trim();
            if let Some(field) = trimmed.strip_prefix("{{").and_then(|t| t.strip_suffix("}}"))
                && !field.contains("{{")
            {
                return FieldPath::new(field.trim()).get(data).cloned().unwrap_or(Value::Null);
            }
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(open) = rest.find("{{") {
                let Some(close) = rest[open..].find("}}") else { break };
                out.push_str(&rest[..open]);
                let field = rest[open + 2..open + close].trim();
                match FieldPath::new(field).get(data) {
                    Some(Value::String(v)) => out.push_str(v),
                    Some(Value::Null) | None => {}
                    Some(v) => out.push_str(&v.to_string()),
                }
                rest = &rest[open + close + 2..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| render(v, data)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), render(v, data))).collect()),
        other => other.clone(),
    }
}

#[async_trait]
impl Sink for RestSink {
    fn kind(&self) -> &'static str {
        crate::SINK_KIND
    }

    fn http_report(&self) -> Option<dovetail_core::HttpReport> {
        Some(self.client.report())
    }

    fn write_mode(&self) -> WriteMode {
        if self.streams.values().any(|s| s.mode == SinkMode::Create) {
            WriteMode::CreateWithIdempotencyKey
        } else {
            WriteMode::Upsert
        }
    }

    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        // A GET writes nothing, yet proves the API answers and takes the credentials (the
        // client fetches a token first when `auth` has one; 401/403 fail as Auth).
        self.client.send(Request::get(&self.check_url)).await.map(|_| ())
    }

    async fn open(&self, stream: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        self.stream(&stream.name).map(|_| ())
    }

    async fn write(&self, batch: Batch, cx: &Cx) -> Result<WriteReport, Error> {
        let cfg = self.stream(&batch.stream.name)?;
        let n = batch.records.len();
        let mut report = WriteReport { dest_ids: vec![None; n], ..Default::default() };
        if let Some(size) = cfg.batch {
            for (chunk_no, chunk) in batch.records.chunks(size).enumerate() {
                let body: Vec<Value> = chunk
                    .iter()
                    .map(|r| cfg.body.as_ref().map(|t| render(t, &r.data)).unwrap_or_else(|| r.data.clone()))
                    .collect();
                let req = Request::new(Method::PUT, cfg.path.clone()).json(&body);
                match self.client.send(req).await {
                    Ok(_) => report.written += chunk.len() as u64,
                    Err(e) if e.kind().disposition().rejects_record() => {
                        for i in 0..chunk.len() {
                            report.rejected.push((chunk_no * size + i, Error::new(e.kind().clone(), e.report())));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(report);
        }
        let concurrency = cfg.concurrency.unwrap_or(4);
        let mut failure: Option<Error> = None;
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        loop {
            // Stop sending new records after a failure or a stop request; the ones in flight finish.
            while next < n && tasks.len() < concurrency && failure.is_none() && !cx.cancel.is_cancelled() {
                let (this, batch, i) = (self.clone(), batch.clone(), next);
                tasks.spawn(async move {
                    let sent = match this.stream(&batch.stream.name) {
                        Ok(cfg) => this.send_one(cfg, &batch.records[i], batch.hints.get(i)).await,
                        Err(e) => Err(e),
                    };
                    (i, sent)
                });
                next += 1;
            }
            let Some(joined) = tasks.join_next().await else { break };
            match joined {
                Ok((i, Ok(Sent::Ok(id)))) => {
                    report.written += 1;
                    report.dest_ids[i] = id;
                }
                Ok((i, Ok(Sent::Rejected(e)))) => report.rejected.push((i, e)),
                Ok((_, Err(e))) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(Error::internal(format!("a write task ended abnormally: {e}")));
                }
            }
        }
        if failure.is_none() && next < n {
            failure = Some(Error::new(ErrorKind::Interrupted, "stopped before the whole batch was sent"));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_keep_types_and_fill_text() {
        let data = json!({"id": 7, "name": "Ada", "owner": {"login": "x"}, "n": null});
        let t = json!({"external_id": "{{id}}", "title": "Item {{name}} by {{owner.login}}", "missing": "{{nope}}", "k": 1});
        assert_eq!(render(&t, &data), json!({"external_id": 7, "title": "Item Ada by x", "missing": null, "k": 1}));
        assert_eq!(fill_path("/v1/items/{id}", &data).unwrap(), "/v1/items/7");
        assert!(fill_path("/v1/items/{n}", &data).unwrap_err().to_string().contains("`n`"));
    }
}
