//! The Stripe sink on the crash harness: customers and products from JSONL files, created
//! at the Stripe double (`crate::stripe`) under their `Idempotency-Key`s.
//!
//! The double lives in the test process and serves from a runtime of its own, so it keeps
//! its objects and idempotency keys across every `dovetail` run the harness kills. The
//! streams are named after the objects (`customers` keyed by `email`, `products` by
//! `name`). Beyond the harness's rows (one object per `metadata[dovetail_key]`, with
//! the record's last version), [`StripeSink::audit`] checks the double's own accounting:
//! no `Idempotency-Key` created two objects and no create came without one, every object's
//! id is the ledger's id of its record, and no create is left pending without an id there.
//!
//! `files_to_stripe` runs the generic sweep (engine failpoints, random SIGKILLs; two or
//! three records change in place after each kill). [`held_creates`] adds the moments that
//! make Stripe hard, which no failpoint reaches: the double makes the n-th create's object
//! and holds its answer back (stalling every write after it) while the harness SIGKILLs the
//! run — the held create is between "pending create recorded" and its response, the
//! creates of its batch answered before it are between their response and the ledger
//! commit. The rerun must replay them under their
//! keys (counted as replays in its report, as many as the double answered from its
//! idempotency store) or, for a record changed meanwhile (`400 idempotency_error`), find
//! the object by lookup. A second history forgets every key after a kill (Stripe's 24 hours,
//! with `key_life_secs = 0` standing for the day): the rerun must look the pending creates
//! up (the double counts its searches) and create none twice.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Audit, CrashPath, CrashSink, CrashSource, PIPELINE, Rows, SourceSetup, StreamSpec, Tally, field_text};
use crate::stripe::{KEY, StripeDouble};
use crate::{Scratch, show, spawn_until};

/// Customers in `customers.jsonl`.
pub const CUSTOMERS: u32 = 750;
/// Products in `products.jsonl`.
pub const PRODUCTS: u32 = 250;
/// Records changed in place after a kill are among each file's first this many lines:
/// inside the 4 KiB the files source fingerprints, so a resumed pass either has them ahead
/// of its offset or restarts from the top, and the current pass reads the change.
const CHANGED_AMONG: u32 = 30;
/// The held creates of the first history: each the n-th object made by a run, whose answer
/// is held while the run is killed (mid batch and a batch's first alike; the next run
/// starts counting anew). Odd positions change the held record before the rerun.
const HOLDS: &[usize] = &[1, 7, 25, 3, 19, 26, 12, 30, 2, 13, 5];
/// The held creates of the history past the key's life.
const EXPIRED_HOLDS: &[usize] = &[9, 30];
/// How long a run may take to reach a held create.
const HOLD_WAIT: Duration = Duration::from_secs(60);

/// The HTTP settings of the sink: fast retries, and no pacing (a test key paces at 25/s).
const SINK_HTTP: &str = "{ retry = { base_delay_ms = 5, max_delay_ms = 50, max_elapsed_ms = 5000 }, \
                         rate_limit = { per_second = 100000, burst = 1000 } }";

/// One line of a stream's file: the record's index and version (`v000`: same length for
/// every version, so a change in place moves no other line).
#[derive(Debug, Clone)]
struct Line {
    i: u32,
    version: u32,
}

/// The two files of a run history, in line order.
#[derive(Debug, Default)]
struct Files {
    dir: PathBuf,
    customers: Vec<Line>,
    products: Vec<Line>,
}

impl Files {
    fn lines(&mut self, stream: &str) -> &mut Vec<Line> {
        match stream {
            "customers" => &mut self.customers,
            _ => &mut self.products,
        }
    }

    fn text(stream: &str, l: &Line) -> String {
        let (i, v) = (l.i, l.version);
        match stream {
            "customers" => format!("{{\"email\": \"c{i:04}@example.com\", \"name\": \"Customer {i:04} v{v:03}\"}}\n"),
            _ => format!("{{\"name\": \"Product {i:03}\", \"description\": \"Plan {i:03} v{v:03}\"}}\n"),
        }
    }

    fn write(&mut self) {
        for stream in ["customers", "products"] {
            let text: String = self.lines(stream).clone().iter().map(|l| Self::text(stream, l)).collect();
            std::fs::write(self.dir.join(format!("{stream}.jsonl")), text).expect("write a source file");
        }
    }

    /// The record `i` of `stream` changed in place: its next version.
    fn change(&mut self, stream: &str, i: u32) {
        let line = self.lines(stream).iter_mut().find(|l| l.i == i).expect("the record is in its file");
        line.version += 1;
        self.write();
    }
}

/// Customers (`email`, `name`) and products (`name`, `description`) in JSONL files, keyed
/// by `email` and `name`; cloned handles share the files, so a harness can change a record.
#[derive(Clone, Default)]
pub struct StripeFiles(Arc<Mutex<Files>>);

impl StripeFiles {
    /// [`CUSTOMERS`] customers and [`PRODUCTS`] products.
    pub fn new() -> Self {
        Self::default()
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl CrashSource for StripeFiles {
    fn start(&mut self, s: &Scratch) -> SourceSetup {
        let mut f = self.files();
        f.dir = s.path("");
        f.customers = (1..=CUSTOMERS).map(|i| Line { i, version: 0 }).collect();
        f.products = (1..=PRODUCTS).map(|i| Line { i, version: 0 }).collect();
        f.write();
        let mut toml = format!("[pipelines.{PIPELINE}.source]\nkind = \"files\"\n");
        for stream in ["customers", "products"] {
            let key = if stream == "customers" { "email" } else { "name" };
            toml.push_str(&format!(
                "[[pipelines.{PIPELINE}.source.streams]]\nname = \"{stream}\"\npath = \"{stream}.jsonl\"\n\
                 primary_key = [\"{key}\"]\n"
            ));
        }
        let spec = |name: &str, key: &str, field: &str| StreamSpec {
            name: name.into(),
            key: key.into(),
            fields: vec![field.to_owned()],
        };
        let streams = vec![spec("customers", "email", "name"), spec("products", "name", "description")];
        SourceSetup { toml, streams, stream_lines: Vec::new() }
    }

    fn expected(&mut self, _: &Scratch) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let mut f = self.files();
        let mut out = BTreeMap::new();
        for stream in ["customers", "products"] {
            let rows = f
                .lines(stream)
                .iter()
                .map(|l| {
                    let v: Value = serde_json::from_str(&Files::text(stream, l)).expect("a source line is JSON");
                    match stream {
                        "customers" => (field_text(&v["email"]), vec![field_text(&v["name"])]),
                        _ => (field_text(&v["name"]), vec![field_text(&v["description"])]),
                    }
                })
                .collect();
            out.insert(stream.to_owned(), rows);
        }
        out
    }

    fn fetched(&self) -> Option<u64> {
        None
    }

    fn after_kill(&mut self, n: u64) {
        // A customer and a product change while no run is live; a third customer too every
        // other kill (so some keys change twice across a history).
        let n = n as u32;
        let mut f = self.files();
        f.change("customers", (n * 7) % CHANGED_AMONG + 1);
        f.change("products", (n * 11) % CHANGED_AMONG + 1);
        if n.is_multiple_of(2) {
            f.change("customers", (n * 13 + 3) % CHANGED_AMONG + 1);
        }
    }
}

/// The double of one run history, then the runtime serving it (dropped in that order).
struct Live {
    double: StripeDouble,
    _rt: tokio::runtime::Runtime,
}

/// The Stripe sink writing to a fresh Stripe double per run history; cloned handles share
/// the double, so a harness can hold a create or forget the keys.
#[derive(Clone, Default)]
pub struct StripeSink(Arc<Mutex<Option<Live>>>);

impl StripeSink {
    /// A sink whose double starts with the first run history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the current history's double.
    fn with<T>(&self, f: impl FnOnce(&StripeDouble) -> T) -> T {
        let live = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&live.as_ref().expect("the sink was started").double)
    }
}

/// The keys of `stream` the state's ledger holds, with their destination ids.
fn ledger(s: &Scratch, stream: &str) -> BTreeMap<String, Option<String>> {
    let db = s.db(".dovetail/state.db");
    let mut st = db
        .prepare("SELECT l.key, l.dest_id FROM ledger l JOIN streams s ON s.id = l.stream_id WHERE s.stream = ?1")
        .expect("read the ledger");
    st.query_map([stream], |r| Ok((r.get(0)?, r.get(1)?))).expect("read the ledger").map(Result::unwrap).collect()
}

/// The creates the state still holds pending: (stream, key).
fn pending(s: &Scratch) -> Vec<(String, String)> {
    let db = s.db(".dovetail/state.db");
    let mut st = db.prepare("SELECT stream, key FROM pending_creates ORDER BY stream, key").expect("read pending");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("read pending").map(Result::unwrap).collect()
}

impl CrashSink for StripeSink {
    fn start(&mut self, _: &Scratch, _: &[StreamSpec]) -> String {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the Stripe double");
        let double = rt.block_on(StripeDouble::start());
        let toml = format!(
            "[pipelines.{PIPELINE}.sink]\nkind = \"stripe\"\napi_key = \"{KEY}\"\nbase_url = \"{}\"\nhttp = {SINK_HTTP}\n",
            double.uri()
        );
        // The last history's double goes before this one starts serving.
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Live { double, _rt: rt });
        toml
    }

    fn rows(&mut self, _: &Scratch, stream: &StreamSpec) -> Rows {
        let objects = self.with(|d| d.objects(&format!("/v1/{}", stream.name)));
        objects
            .iter()
            .map(|o| {
                // The key the sink created the object under; an object without one is no record's.
                let key = o["metadata"]["dovetail_key"]
                    .as_str()
                    .and_then(|k| serde_json::from_str::<Value>(k).ok())
                    .map_or_else(|| format!("(no dovetail_key: {})", o["id"]), |k| field_text(&k));
                (key, stream.fields.iter().map(|f| field_text(&o[f])).collect())
            })
            .collect()
    }

    fn audit(&mut self, s: &Scratch, streams: &[StreamSpec]) -> Audit {
        let mut audit = Audit::default();
        let mut per_key: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (path, key) in self.with(StripeDouble::create_log) {
            match key {
                Some(k) => *per_key.entry((path, k)).or_default() += 1,
                None => audit.duplicated.push(format!("{path}: an object was created without an Idempotency-Key")),
            }
        }
        for ((path, key), n) in per_key.into_iter().filter(|(_, n)| *n > 1) {
            audit.duplicated.push(format!("{path}: Idempotency-Key {key} created {n} objects"));
        }
        let pending = pending(s);
        for spec in streams {
            let ledger = ledger(s, &spec.name);
            // The commit that stores a key's id clears its pending create in the same
            // transaction: after the clean runs none is left, beside an id or without one (a
            // create unaccounted for).
            for (_, key) in pending.iter().filter(|(st, _)| *st == spec.name) {
                match ledger.get(key) {
                    Some(Some(id)) => audit.duplicated.push(format!(
                        "{}: the create of {key} is still pending beside its committed id {id}",
                        spec.name
                    )),
                    _ => audit
                        .lost
                        .push(format!("{}: the create of {key} is pending, and no id is in the ledger", spec.name)),
                }
            }
            for o in self.with(|d| d.objects(&format!("/v1/{}", spec.name))) {
                let (id, key) =
                    (o["id"].as_str().unwrap_or("?"), o["metadata"]["dovetail_key"].as_str().unwrap_or("?"));
                match ledger.get(key) {
                    Some(Some(held)) if held == id => {}
                    other => audit.lost.push(format!(
                        "{}: {key}'s object {id} is not the ledger's (the ledger holds {other:?})",
                        spec.name
                    )),
                }
            }
        }
        audit
    }
}

/// Arms the double to hold the `n`-th create from now, starts a run and SIGKILLs it as soon
/// as that create's object was made. Returns the object.
fn kill_at_held_create(s: &Scratch, sink: &StripeSink, n: usize) -> Value {
    sink.with(|d| d.hold_create(n));
    let (mut child, _) = spawn_until(s.cmd(&["run"]), "run started");
    let started = Instant::now();
    loop {
        if let Some(object) = sink.with(StripeDouble::held) {
            let _ = child.kill();
            let status = child.wait().expect("wait for dovetail");
            assert_eq!(status.signal(), Some(libc::SIGKILL), "the run held at its create {n} was killed");
            sink.with(StripeDouble::release);
            return object;
        }
        if let Some(status) = child.try_wait().expect("poll dovetail") {
            super::failed(s, &format!("the run ended ({status:?}) before its create {n} was held"));
        }
        assert!(started.elapsed() < HOLD_WAIT, "the run did not reach its create {n} in {HOLD_WAIT:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The held object's stream and record index (`customers`, 7 for `c0007@example.com`).
fn held_record(object: &Value) -> (&'static str, u32) {
    let (stream, key) = match object["id"].as_str() {
        Some(id) if id.starts_with("cus_") => ("customers", object["email"].as_str().and_then(|e| e.get(1..5))),
        _ => ("products", object["name"].as_str().and_then(|n| n.strip_prefix("Product "))),
    };
    (stream, key.and_then(|k| k.parse().ok()).unwrap_or_else(|| panic!("not an object of the source: {object}")))
}

/// A run to completion after kills: it must succeed, and its report must count as replays
/// exactly the creates the double answered from its idempotency store meanwhile. Returns
/// those replays.
fn rerun_counting_replays(s: &Scratch, sink: &StripeSink, tally: &mut Tally) -> u64 {
    let before = sink.with(StripeDouble::writes).1;
    let (out, report) = s.run_json(&[]);
    assert!(out.status.success(), "the rerun after the held creates failed:\n{}", show(&out));
    let replays = (sink.with(StripeDouble::writes).1 - before) as u64;
    let counted: u64 =
        ["customers", "products"].iter().map(|st| report["streams"][st]["replayed"].as_u64().unwrap_or(0)).sum();
    if counted != replays {
        tally.duplicated += replays.abs_diff(counted);
        super::note(
            tally,
            format!("the rerun's report counts {counted} replays, the double answered {replays} from its store"),
        );
    }
    replays
}

/// Kills runs at held creates — keys alive, then past their life — and checks each history
/// exactly (the harness's rows and [`StripeSink::audit`]); prints one `crash-path:` line.
pub fn held_creates(name: &str) -> Tally {
    let (files, sink) = (StripeFiles::new(), StripeSink::new());
    let mut path = CrashPath::new(name, files.clone(), sink.clone());
    let mut tally = Tally::default();
    // What the histories must have gone through, checked after the records are (so a
    // duplicate is reported as one).
    let mut unexercised = Vec::new();

    // Keys alive: each rerun replays the held creates (or, for a record changed meanwhile,
    // meets `idempotency_error` and finds the object by search).
    let (s, streams) = path.start();
    for (i, &n) in HOLDS.iter().enumerate() {
        let held = kill_at_held_create(&s, &sink, n);
        tally.kills += 1;
        if i % 2 == 1 {
            let (stream, i) = held_record(&held);
            files.files().change(stream, i);
        }
    }
    let replays = rerun_counting_replays(&s, &sink, &mut tally);
    // The last held record was left unchanged: its create (at least) is replayed; the
    // changed ones met `idempotency_error` and were searched for.
    if replays == 0 {
        unexercised.push("the rerun after the last held create replayed nothing");
    }
    if sink.with(StripeDouble::searches) == 0 {
        unexercised.push("no changed held record was looked up");
    }
    let (created, replayed, updates) = sink.with(StripeDouble::writes);
    eprintln!(
        "{name}: keys alive: {created} objects created, {replayed} creates replayed ({replays} by the last rerun), \
         {} updates, {} searches",
        updates.len(),
        sink.with(StripeDouble::searches)
    );
    path.check(&s, &streams, &mut tally, None);
    drop(s);

    // Past the key's life: after each kill Stripe forgets every key; the rerun must look the
    // pending creates up (the held one is found) rather than create them again.
    let (s, streams) = path.start();
    let config = std::fs::read_to_string(s.path("dovetail.toml")).expect("read the config");
    for (i, &n) in EXPIRED_HOLDS.iter().enumerate() {
        let held = kill_at_held_create(&s, &sink, n);
        tally.kills += 1;
        if i == 0 {
            // The day passes: `key_life_secs = 0` from now on.
            s.write("dovetail.toml", &config.replace("kind = \"stripe\"\n", "kind = \"stripe\"\nkey_life_secs = 0\n"));
            let (stream, i) = held_record(&held);
            files.files().change(stream, i);
        }
        sink.with(StripeDouble::expire_keys);
    }
    let searches = sink.with(StripeDouble::searches);
    let replays = rerun_counting_replays(&s, &sink, &mut tally);
    if sink.with(StripeDouble::searches) == searches {
        unexercised.push("the rerun past the key's life looked nothing up");
    }
    if replays > 0 {
        unexercised.push("the double forgot its keys, yet replayed");
    }
    eprintln!(
        "{name}: past the key's life: {} objects created, {} searches by the last rerun",
        sink.with(StripeDouble::writes).0,
        sink.with(StripeDouble::searches) - searches
    );
    path.check(&s, &streams, &mut tally, None);
    drop(s);

    super::finish(name, &tally, 0);
    assert!(unexercised.is_empty(), "{name}: {}", unexercised.join("; "));
    tally
}
