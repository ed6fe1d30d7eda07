//! Sources of the crash paths: a JSONL file, and the fake vendor's REST listings in each
//! pagination style, incremental or full refresh, with a child stream.

use std::collections::BTreeMap;
use std::io::Write;

use dovetail_fake_vendor::{FakeVendor, Faults, VendorConfig, VendorHandle};
use serde_json::Value;

use super::{BATCH, CrashSource, PIPELINE, SourceSetup, StreamSpec, field_text};
use crate::Scratch;
use crate::vendor::FAST_HTTP;

/// Records of a file source and of the vendor's listings: 40 batches.
pub const RECORDS: u64 = 1000;
/// Items of a parent → child path (each with 0–3 comments).
pub const PARENTS: u64 = 300;

/// A fake vendor serving from its own runtime, so the harness's blocking runs leave it free.
pub struct LiveVendor {
    /// The vendor.
    pub handle: VendorHandle,
    rt: tokio::runtime::Runtime,
}

impl LiveVendor {
    /// Starts a vendor with `config`.
    pub fn start(config: VendorConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake vendor");
        let handle = rt.block_on(FakeVendor::start(config)).expect("start the fake vendor");
        LiveVendor { handle, rt }
    }

    /// Runs `f` on the vendor's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// `{"id", "name", "big"}` records in `events.jsonl`; the sink must hold each as written.
pub struct FileSource {
    records: u64,
    repeats: bool,
}

impl FileSource {
    /// [`RECORDS`] lines of JSONL, a 20-digit integer in each.
    pub fn jsonl() -> Self {
        FileSource { records: RECORDS, repeats: false }
    }

    /// [`FileSource::jsonl`], and after every 10th line a later version of the key 7 lines
    /// back: the last version of a key repeated in one pass must win (not for append-only
    /// sinks, which keep every version).
    pub fn jsonl_with_repeats() -> Self {
        FileSource { records: RECORDS, repeats: true }
    }

    /// Whether `id` has a second, later version in the file.
    fn repeated(&self, id: u64) -> bool {
        self.repeats && (id + 7) % 10 == 9 && id + 7 < self.records
    }

    fn last_name(&self, id: u64) -> String {
        if self.repeated(id) { format!("{}-v2", Self::name(id)) } else { Self::name(id) }
    }

    fn name(id: u64) -> String {
        format!("event-{}-{}", id % 13, (id * 7919) % 100_003)
    }

    fn big(id: u64) -> String {
        format!("1234567890123456789{}", id % 10)
    }
}

impl CrashSource for FileSource {
    fn start(&mut self, s: &Scratch) -> SourceSetup {
        let file = std::fs::File::create(s.path("events.jsonl")).expect("create events.jsonl");
        let mut f = std::io::BufWriter::new(file);
        for id in 0..self.records {
            writeln!(f, r#"{{"id": {id}, "name": "{}", "big": {}}}"#, Self::name(id), Self::big(id)).unwrap();
            if id >= 7 && self.repeated(id - 7) {
                let old = id - 7;
                writeln!(f, r#"{{"id": {old}, "name": "{}", "big": {}}}"#, self.last_name(old), Self::big(old))
                    .unwrap();
            }
        }
        f.flush().unwrap();
        let toml = format!(
            "[pipelines.{PIPELINE}.source]\nkind = \"files\"\n[[pipelines.{PIPELINE}.source.streams]]\n\
             name = \"events\"\npath = \"events.jsonl\"\nprimary_key = [\"id\"]\n"
        );
        let spec = StreamSpec { name: "events".into(), key: "id".into(), fields: vec!["name".into(), "big".into()] };
        SourceSetup { toml, streams: vec![spec], stream_lines: Vec::new() }
    }

    fn expected(&mut self, _: &Scratch) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let rows = (0..self.records).map(|id| (id.to_string(), vec![self.last_name(id), Self::big(id)])).collect();
        BTreeMap::from([("events".to_owned(), rows)])
    }

    fn fetched(&self) -> Option<u64> {
        None
    }
}

/// How a REST path lists the vendor's items.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Listing {
    Cursor,
    Link,
    Page,
    Offset,
}

/// The fake vendor's items (and, with [`RestSource::child`], their comments) through the
/// REST source.
pub struct RestSource {
    listing: Listing,
    incremental: bool,
    child: bool,
    vendor: Option<LiveVendor>,
}

impl RestSource {
    fn new(listing: Listing) -> Self {
        RestSource { listing, incremental: false, child: false, vendor: None }
    }
    /// Cursor pagination (`/v1/items`), full refresh.
    pub fn cursor() -> Self {
        Self::new(Listing::Cursor)
    }
    /// `Link` header pagination (`/v1/items/link`), full refresh.
    pub fn link() -> Self {
        Self::new(Listing::Link)
    }
    /// Page numbers (`/v1/items/paged`), full refresh.
    pub fn page() -> Self {
        Self::new(Listing::Page)
    }
    /// Offsets (`/v1/items/offset`), full refresh.
    pub fn offset() -> Self {
        Self::new(Listing::Offset)
    }
    /// Cursor pagination, incremental by `updated_at` (sent as `updated_since`); after each
    /// kill three records change (a new `updated_at` and `name`), so the sink must end with
    /// their last versions.
    pub fn incremental() -> Self {
        RestSource { incremental: true, ..Self::new(Listing::Cursor) }
    }
    /// Items and their comments (`/v1/items/{parent.id}/comments`), full refresh.
    pub fn child() -> Self {
        RestSource { child: true, ..Self::new(Listing::Cursor) }
    }

    fn vendor(&self) -> &LiveVendor {
        self.vendor.as_ref().expect("the source was started")
    }

    fn items_stream(&self) -> String {
        let (path, paging) = match self.listing {
            Listing::Cursor => (
                "/v1/items",
                format!(
                    "query = {{ limit = \"{BATCH}\" }}\nrecords = \"/data\"\n\
                     pagination = {{ type = \"cursor\", pointer = \"/meta/next_cursor\", param = \"cursor\" }}"
                ),
            ),
            Listing::Link => (
                "/v1/items/link",
                format!("query = {{ per_page = \"{BATCH}\" }}\npagination = {{ type = \"link_header\" }}"),
            ),
            Listing::Page => (
                "/v1/items/paged",
                format!(
                    "query = {{ per_page = \"{BATCH}\" }}\nrecords = \"/data\"\n\
                     pagination = {{ type = \"page_number\", param = \"page\", page_size = {BATCH} }}"
                ),
            ),
            Listing::Offset => (
                "/v1/items/offset",
                format!(
                    "query = {{ limit = \"{BATCH}\" }}\nrecords = \"/data\"\n\
                     pagination = {{ type = \"offset\", param = \"offset\", page_size = {BATCH}, total_pointer = \"/total\" }}"
                ),
            ),
        };
        let mut t = format!(
            "[[pipelines.{PIPELINE}.source.streams]]\nname = \"items\"\npath = \"{path}\"\nprimary_key = [\"id\"]\n{paging}\n"
        );
        if self.incremental {
            t.push_str(
                "incremental = { cursor_field = \"updated_at\", param = \"updated_since\", initial = \"2000-01-01T00:00:00Z\" }\n",
            );
        }
        t
    }
}

impl CrashSource for RestSource {
    fn start(&mut self, _: &Scratch) -> SourceSetup {
        let records = if self.child { PARENTS } else { RECORDS };
        let vendor = LiveVendor::start(VendorConfig { records, faults: Faults::default(), ..VendorConfig::default() });
        let mut toml = format!(
            "[pipelines.{PIPELINE}.source]\nkind = \"rest\"\nbase_url = \"{}\"\nhttp = {FAST_HTTP}\n\n{}",
            vendor.handle.base_url(),
            self.items_stream()
        );
        let mut streams =
            vec![StreamSpec { name: "items".into(), key: "id".into(), fields: vec!["name".into(), "big".into()] }];
        if self.child {
            toml.push_str(&format!(
                "\n[[pipelines.{PIPELINE}.source.streams]]\nname = \"comments\"\npath = \"/v1/items/{{parent.id}}/comments\"\n\
                 primary_key = [\"id\"]\nquery = {{ limit = \"10\" }}\nrecords = \"/data\"\n\
                 pagination = {{ type = \"cursor\", pointer = \"/meta/next_cursor\", param = \"cursor\" }}\n\
                 parent = {{ stream = \"items\", fields = {{ item_id = \"id\" }} }}\n"
            ));
            streams.push(StreamSpec {
                name: "comments".into(),
                key: "id".into(),
                fields: vec!["item_id".into(), "body".into()],
            });
        }
        let mode = if self.incremental { "incremental" } else { "full_refresh" };
        let stream_lines = streams.iter().map(|s| (s.name.clone(), format!("sync_mode = \"{mode}\""))).collect();
        self.vendor = Some(vendor);
        SourceSetup { toml, streams, stream_lines }
    }

    fn expected(&mut self, _: &Scratch) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let base = self.vendor().handle.base_url();
        let items = self.vendor().block_on(crate::vendor::fetch_all_items(&base));
        let fields = |r: &Value, names: &[&str]| names.iter().map(|n| field_text(&r[*n])).collect::<Vec<_>>();
        let mut out = BTreeMap::new();
        let rows = items.iter().map(|r| (field_text(&r["id"]), fields(r, &["name", "big"]))).collect();
        out.insert("items".to_owned(), rows);
        if self.child {
            let ids: Vec<String> = items.iter().map(|r| field_text(&r["id"])).collect();
            let comments = self.vendor().block_on(async {
                let client = reqwest::Client::new();
                let mut all = Vec::new();
                for id in ids {
                    let page: Value = client
                        .get(format!("{base}/v1/items/{id}/comments?limit=1000"))
                        .send()
                        .await
                        .and_then(reqwest::Response::error_for_status)
                        .expect("GET comments")
                        .json()
                        .await
                        .expect("comments JSON");
                    all.extend(page["data"].as_array().expect("data").iter().cloned());
                }
                all
            });
            let rows = comments.iter().map(|r| (field_text(&r["id"]), fields(r, &["item_id", "body"]))).collect();
            out.insert("comments".to_owned(), rows);
        }
        out
    }

    fn fetched(&self) -> Option<u64> {
        Some(self.vendor().handle.stats().records_served)
    }

    fn after_kill(&mut self, n: u64) {
        if self.incremental {
            // Spread over the listing: some already delivered, some still ahead of the cursor.
            let ids: Vec<u64> = (0..3).map(|i| (n * 331 + i * 397) % RECORDS + 1).collect();
            self.vendor().handle.touch(&ids);
        }
    }
}

/// Stripe's customers on the Stripe double (`crate::stripe`), read by the Stripe source:
/// newest first by `created`, three customers a second (so page boundaries split equal
/// values), and three more customers created after each kill — during the run history,
/// newer than everything read — which the following runs must pick up.
pub struct StripeSource {
    /// The double, then the runtime serving it (dropped in that order).
    live: Option<(crate::stripe::StripeDouble, tokio::runtime::Runtime)>,
    customers: Vec<Value>,
}

impl StripeSource {
    /// 4 × [`RECORDS`] customers: Stripe pages by 100, so a run still has dozens of pages
    /// (and checkpoints) for a kill to land between.
    pub fn customers() -> Self {
        StripeSource { live: None, customers: Vec::new() }
    }
}

impl CrashSource for StripeSource {
    fn start(&mut self, _s: &Scratch) -> SourceSetup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the Stripe double");
        let double = rt.block_on(crate::stripe::StripeDouble::start());
        let base = crate::stripe::now() - 100_000;
        self.customers = crate::stripe::customers(1..=4 * RECORDS as u32, |i| base + i64::from(i) / 3);
        double.add("/v1/customers", self.customers.clone());
        let toml = format!(
            "[pipelines.{PIPELINE}.source]\nkind = \"stripe\"\napi_key = \"{}\"\nbase_url = \"{}\"\n\
             streams = [\"customers\"]\nhttp = {FAST_HTTP}\n",
            crate::stripe::KEY,
            double.uri()
        );
        self.live = Some((double, rt));
        let spec =
            StreamSpec { name: "customers".into(), key: "id".into(), fields: vec!["email".into(), "created".into()] };
        SourceSetup { toml, streams: vec![spec], stream_lines: Vec::new() }
    }

    fn expected(&mut self, _: &Scratch) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let rows = self
            .customers
            .iter()
            .map(|c| (field_text(&c["id"]), vec![field_text(&c["email"]), field_text(&c["created"])]))
            .collect();
        BTreeMap::from([("customers".to_owned(), rows)])
    }

    fn fetched(&self) -> Option<u64> {
        None
    }

    fn after_kill(&mut self, n: u64) {
        let now = crate::stripe::now();
        let new =
            crate::stripe::customers((0..3).map(|j| 9000 + (n as u32 % 300) * 3 + j + 4 * RECORDS as u32), |_| now);
        if let Some((double, _)) = &self.live {
            double.add("/v1/customers", new.clone());
        }
        self.customers.extend(new);
    }
}

/// HubSpot's contacts on the HubSpot double (`crate::hubspot`), read by the HubSpot source:
/// the first run lists them (100 a page); after each kill a third of them change (modified
/// now, all at one instant, and a new email), so kills land in first passes that list and
/// in incremental passes that search, and a resumed pass must deliver what changed while
/// it was stopped — also behind a list's position.
pub struct HubspotSource {
    /// The double, then the runtime serving it (dropped in that order).
    live: Option<(wiremock::MockServer, tokio::runtime::Runtime)>,
    contacts: crate::hubspot::Contacts,
}

impl HubspotSource {
    /// Three times [`RECORDS`] contacts, modified over the hour before the start, three
    /// sharing each time.
    pub fn contacts() -> Self {
        HubspotSource { live: None, contacts: Default::default() }
    }
}

/// Now, in epoch milliseconds (HubSpot stamps a change with its own clock).
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl CrashSource for HubspotSource {
    fn start(&mut self, _s: &Scratch) -> SourceSetup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the HubSpot double");
        // Thirty pages of HubSpot's fixed 100: enough checkpoints for every failpoint's hit.
        let t0 = now_ms() - 3_600_000;
        let contacts = (1..=RECORDS * 3).map(|id| (id, t0 + (id as i64 / 3) * 1000, format!("c{id}@example.com")));
        self.contacts = std::sync::Arc::new(std::sync::Mutex::new(contacts.collect()));
        let (server, _, _) = rt.block_on(crate::hubspot::start(self.contacts.clone(), None, Default::default()));
        let toml = format!(
            "[pipelines.{PIPELINE}.source]\nkind = \"hubspot\"\ntoken = \"pat-na1-crash-harness-not-real\"\n\
             base_url = \"{}\"\nobjects = [\"contacts\"]\nsearch_rate = 100\nhttp = {FAST_HTTP}\n",
            server.uri()
        );
        self.live = Some((server, rt));
        let spec = StreamSpec { name: "contacts".into(), key: "id".into(), fields: vec!["updatedAt".into()] };
        SourceSetup { toml, streams: vec![spec], stream_lines: Vec::new() }
    }

    fn expected(&mut self, _: &Scratch) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let all = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        let rows = all.iter().map(|c| (c.0.to_string(), vec![crate::hubspot::iso(c.1)])).collect();
        BTreeMap::from([("contacts".to_owned(), rows)])
    }

    fn fetched(&self) -> Option<u64> {
        None
    }

    fn after_kill(&mut self, n: u64) {
        let mut all = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        let newest = all.iter().map(|c| c.1).max().unwrap_or_default();
        let at = now_ms().max(newest + 1);
        for c in all.iter_mut().filter(|c| c.0 % 3 == n % 3) {
            c.1 = at;
            c.2 = format!("v{n}-c{}@example.com", c.0);
        }
    }
}
