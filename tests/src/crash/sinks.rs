//! Sinks of the crash paths and the readers of what each holds: SQLite, JSONL, the REST
//! sink creating objects at the fake vendor with idempotency keys, and the HubSpot sink
//! upserting into a HubSpot double (PostgreSQL's, which needs the testkit, a
//! dev-dependency, is in tests/tests/crash_paths.rs).

use dovetail_fake_vendor::{Faults, VendorConfig};
use serde_json::Value;

use super::sources::LiveVendor;
use super::{CrashSink, ENGINE_FAILPOINTS, PIPELINE, Rows, StreamSpec, field_text};
use crate::Scratch;
use crate::vendor::FAST_HTTP;

/// The SQLite sink, `out.db`, one table per stream.
pub struct SqliteSink;

impl CrashSink for SqliteSink {
    fn start(&mut self, _: &Scratch, _: &[StreamSpec]) -> String {
        format!("[pipelines.{PIPELINE}.sink]\nkind = \"sqlite\"\npath = \"out.db\"\n")
    }

    fn rows(&mut self, s: &Scratch, stream: &StreamSpec) -> Rows {
        if !s.path("out.db").exists() {
            return Vec::new();
        }
        let db = s.db("out.db");
        let cols: Vec<String> =
            std::iter::once(&stream.key).chain(&stream.fields).map(|c| format!("CAST(\"{c}\" AS TEXT)")).collect();
        let sql = format!("SELECT {} FROM \"{}\"", cols.join(", "), stream.name);
        let Ok(mut stmt) = db.prepare(&sql) else { return Vec::new() };
        stmt.query_map([], |r| {
            let key: String = r.get(0)?;
            let fields =
                (1..=stream.fields.len()).map(|i| r.get::<_, Option<String>>(i)).collect::<Result<Vec<_>, _>>()?;
            Ok((key, fields.into_iter().map(Option::unwrap_or_default).collect()))
        })
        .expect("query the sink table")
        .map(|r| r.expect("a sink row"))
        .collect()
    }

    fn failpoints(&self) -> Vec<&'static str> {
        // `mid_batch`: half a batch inside SQLite's uncommitted transaction.
        ENGINE_FAILPOINTS.iter().copied().chain(["mid_batch"]).collect()
    }
}

/// The JSONL sink, `out/<stream>.jsonl`: one line per write, so a line per key is exact.
pub struct JsonlSink;

impl CrashSink for JsonlSink {
    fn start(&mut self, _: &Scratch, _: &[StreamSpec]) -> String {
        format!("[pipelines.{PIPELINE}.sink]\nkind = \"jsonl\"\ndir = \"out\"\n")
    }

    fn rows(&mut self, s: &Scratch, stream: &StreamSpec) -> Rows {
        let text = std::fs::read_to_string(s.path(&format!("out/{}.jsonl", stream.name))).unwrap_or_default();
        text.lines()
            .enumerate()
            .map(|(i, line)| {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("out/{}.jsonl:{}: not JSON ({e}): {line}", stream.name, i + 1));
                (field_text(&v[&stream.key]), stream.fields.iter().map(|f| field_text(&v[f])).collect())
            })
            .collect()
    }
}

/// The REST sink creating each record as an object at a fake vendor (`POST /v1/items` with
/// an `Idempotency-Key`); the objects carry the record's key as `external_id`.
pub struct RestCreateSink {
    vendor: Option<LiveVendor>,
}

impl RestCreateSink {
    /// Creates at a fake vendor that takes 1 ms per response, so a kill lands mid-creation.
    pub fn new() -> Self {
        RestCreateSink { vendor: None }
    }
}

impl Default for RestCreateSink {
    fn default() -> Self {
        Self::new()
    }
}

impl CrashSink for RestCreateSink {
    fn start(&mut self, _: &Scratch, streams: &[StreamSpec]) -> String {
        let faults = Faults { latency_ms: 1, ..Faults::default() };
        let vendor = LiveVendor::start(VendorConfig { faults, ..VendorConfig::default() });
        let mut t = format!(
            "[pipelines.{PIPELINE}.sink]\nkind = \"rest\"\nbase_url = \"{}\"\nhttp = {FAST_HTTP}\n",
            vendor.handle.base_url()
        );
        for s in streams {
            let body: Vec<String> = std::iter::once(format!("external_id = \"{{{{{}}}}}\"", s.key))
                .chain(s.fields.iter().map(|f| format!("{f} = \"{{{{{f}}}}}\"")))
                .collect();
            t.push_str(&format!(
                "\n[pipelines.{PIPELINE}.sink.streams.{}]\nmode = \"create\"\npath = \"/v1/items\"\nbody = {{ {} }}\n",
                s.name,
                body.join(", ")
            ));
        }
        self.vendor = Some(vendor);
        t
    }

    fn rows(&mut self, _: &Scratch, stream: &StreamSpec) -> Rows {
        let vendor = self.vendor.as_ref().expect("the sink was started");
        // Every creation is an object: a key created twice is two rows (and the vendor's
        // `duplicate_creations` says so too).
        vendor
            .handle
            .created()
            .iter()
            .map(|o| (field_text(&o["external_id"]), stream.fields.iter().map(|f| field_text(&o[f])).collect()))
            .collect()
    }
}

/// The HubSpot sink upserting each record by its key (`id_property` = the stream's key)
/// into a HubSpot double that keeps one object per key, as HubSpot does: an upsert replayed
/// after a kill changes nothing. Its rows are the double's objects.
pub struct HubspotSink {
    /// The double, then the runtime serving it (dropped in that order).
    live: Option<(wiremock::MockServer, tokio::runtime::Runtime)>,
    objects: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Map<String, Value>>>>,
}

impl HubspotSink {
    /// A sink at a fresh HubSpot double.
    pub fn new() -> Self {
        HubspotSink { live: None, objects: Default::default() }
    }
}

impl Default for HubspotSink {
    fn default() -> Self {
        Self::new()
    }
}

/// HubSpot's batch upsert over the double's objects: `inputs` of `idProperty`, `id`,
/// `properties`; the object with that property value is updated, else one is created.
struct Upsert(std::sync::Arc<std::sync::Mutex<Vec<serde_json::Map<String, Value>>>>);

impl wiremock::Respond for Upsert {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let mut objects = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut results = Vec::new();
        for input in body["inputs"].as_array().into_iter().flatten() {
            let (prop, id) = (input["idProperty"].as_str().unwrap_or(""), &input["id"]);
            let props = input["properties"].as_object().cloned().unwrap_or_default();
            let at = match objects.iter().position(|o| o.get(prop) == Some(id)) {
                Some(i) => i,
                None => {
                    objects.push(serde_json::Map::new());
                    objects.len() - 1
                }
            };
            objects[at].extend(props);
            results.push(serde_json::json!({ "id": format!("{}", at + 1), "properties": objects[at] }));
        }
        wiremock::ResponseTemplate::new(200)
            .set_delay(std::time::Duration::from_millis(1))
            .set_body_json(serde_json::json!({ "status": "COMPLETE", "results": results }))
    }
}

impl CrashSink for HubspotSink {
    fn start(&mut self, _: &Scratch, streams: &[StreamSpec]) -> String {
        use wiremock::matchers::{method, path_regex};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the HubSpot double");
        let spec = streams.first().expect("a stream");
        let objects = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = rt.block_on(async {
            let server = wiremock::MockServer::start().await;
            let props: Vec<Value> = std::iter::once(&spec.key)
                .chain(&spec.fields)
                .map(|name| serde_json::json!({ "name": name, "type": "string", "fieldType": "text", "options": [] }))
                .collect();
            wiremock::Mock::given(method("GET"))
                .and(path_regex("^/crm/properties/[^/]+/contacts$"))
                .respond_with(
                    wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({ "results": props })),
                )
                .mount(&server)
                .await;
            wiremock::Mock::given(method("POST"))
                .and(path_regex("^/crm/objects/[^/]+/contacts/batch/upsert$"))
                .respond_with(Upsert(objects.clone()))
                .mount(&server)
                .await;
            server
        });
        let toml = format!(
            "[pipelines.{PIPELINE}.sink]\nkind = \"hubspot\"\ntoken = \"pat-na1-crash-not-real\"\nbase_url = \"{}\"\n\
             object = \"contacts\"\nid_property = \"{}\"\nhttp = {FAST_HTTP}\n",
            server.uri(),
            spec.key
        );
        self.objects = objects;
        self.live = Some((server, rt));
        toml
    }

    fn rows(&mut self, _: &Scratch, stream: &StreamSpec) -> Rows {
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects
            .iter()
            .map(|o| {
                let text = |f: &String| o.get(f).map(field_text).unwrap_or_default();
                (text(&stream.key), stream.fields.iter().map(text).collect())
            })
            .collect()
    }
}
