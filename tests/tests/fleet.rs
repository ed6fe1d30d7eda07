//! `dovetail worker` fleets on PostgreSQL state (issue 23): each worker its own process,
//! one fake vendor, the testkit's throwaway PostgreSQL. Who held what is read from the
//! state's `lease_history`, never from logs; waits are on log lines and state rows.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use dovetail_e2e::vendor::{FAST_HTTP, expected_items, fetch_all_items};
use dovetail_e2e::watch::Watched;
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, Faults, VendorConfig};
use dovetail_testkit::pg;

const PASSWORD_ENV: &str = "DOVETAIL_E2E_PG_PASSWORD";
const LEASE: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(500);

/// A config of `pipelines` REST → SQLite pipelines (`out_N.db`), each `every = "1h"` (one
/// tick in a test), their state in `db`.
fn fleet_config(s: &Scratch, db: &pg::TestDb, base_url: &str, pipelines: usize, page: u32) {
    fleet_config_with(s, db, base_url, pipelines, page, None, "every = \"1h\"");
}

/// [`fleet_config`], with `sink` (a `[pipelines.pN.sink]` body) instead of SQLite files and
/// `every` for the even pipelines (odd ones run on a cron schedule, every hour in Kolkata).
fn fleet_config_with(
    s: &Scratch,
    db: &pg::TestDb,
    base_url: &str,
    pipelines: usize,
    page: u32,
    sink: Option<&str>,
    every: &str,
) {
    let url = state_url(db);
    let mut t = format!("[state]\nurl = \"{url}\"\n\n[workers]\nlease = \"2s\"\nheartbeat = \"500ms\"\n");
    for n in 0..pipelines {
        t.push_str(&format!(
            r#"
[pipelines.p{n}]
{when}
batch_size = {page}

[pipelines.p{n}.source]
kind = "rest"
base_url = "{base_url}"
http = {FAST_HTTP}
[[pipelines.p{n}.source.streams]]
name = "items"
path = "/v1/items"
primary_key = ["id"]
query = {{ limit = "{page}" }}
records = "/data"
pagination = {{ type = "cursor", pointer = "/meta/next_cursor", param = "cursor" }}

[pipelines.p{n}.sink]
{sink}
"#,
            when = if n % 2 == 1 { "schedule = \"0 * * * *\"\ntimezone = \"Asia/Kolkata\"" } else { every },
            sink = sink.map(str::to_owned).unwrap_or_else(|| format!("kind = \"sqlite\"\npath = \"out_{n}.db\"")),
        ));
    }
    s.write("dovetail.toml", &t);
}

/// The database URL with its password from the environment.
fn state_url(db: &pg::TestDb) -> String {
    db.url().replace(&format!(":{}@", db.password()), &format!(":${{{PASSWORD_ENV}}}@"))
}

fn worker(s: &Scratch, db: &pg::TestDb, id: &str) -> Watched {
    let mut cmd = s.cmd(&["worker", "--id", id, "--concurrency", "2"]);
    cmd.env(PASSWORD_ENV, db.password());
    Watched::spawn(cmd)
}

async fn client(db: &pg::TestDb) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

/// Polls `sql` (one bigint) until it reaches `want`, for up to `within`.
async fn until_count(c: &tokio_postgres::Client, sql: &str, want: i64, within: Duration) {
    let start = Instant::now();
    loop {
        let n: i64 = c.query_one(sql, &[]).await.map(|r| r.get(0)).unwrap_or(0);
        if n >= want {
            return;
        }
        assert!(start.elapsed() < within, "`{sql}` reached {n}, not {want}, within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each unit held by one worker at a time: replaying its history, every claim follows a
/// release (or takes over, naming the holder it replaced), epochs only grow, and every
/// renew and release is by the current holder at the current epoch; only `fenced` rows come
/// from an older epoch.
async fn assert_one_holder_at_a_time(c: &tokio_postgres::Client) -> BTreeMap<(String, String), Vec<String>> {
    let rows = c
        .query(
            "SELECT pipeline, unit, event, holder, epoch, previous_holder FROM dovetail.lease_history ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let mut current: BTreeMap<(String, String), (Option<String>, i64)> = BTreeMap::new();
    let mut events: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in rows {
        let (p, u, event, holder, epoch, prev): (String, String, String, String, i64, Option<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let key = (p, u);
        let (held_by, at) = current.get(&key).cloned().unwrap_or((None, 0));
        match event.as_str() {
            "claim" => {
                assert!(held_by.is_none() && epoch > at, "{key:?}: claim by {holder}@{epoch} while {held_by:?}@{at}")
            }
            "takeover" => assert!(
                held_by == prev && held_by.is_some() && epoch > at,
                "{key:?}: takeover by {holder}@{epoch} from {prev:?} while {held_by:?}@{at}"
            ),
            "renew" | "release" => assert!(
                held_by.as_deref() == Some(holder.as_str()) && epoch == at,
                "{key:?}: {event} by {holder}@{epoch} while {held_by:?}@{at}"
            ),
            "fenced" => assert!(epoch < at, "{key:?}: fenced {holder}@{epoch} while the epoch is {at}"),
            other => panic!("unknown lease event {other}"),
        }
        match event.as_str() {
            "claim" | "takeover" => {
                current.insert(key.clone(), (Some(holder.clone()), epoch));
            }
            "release" => {
                current.insert(key.clone(), (None, epoch));
            }
            _ => {}
        }
        if event != "renew" {
            events.entry(key).or_default().push(format!("{event} {holder}"));
        }
    }
    events
}

fn sink_ids(s: &Scratch, n: usize) -> Vec<u64> {
    let db = s.db(&format!("out_{n}.db"));
    let mut st = db.prepare("SELECT id FROM items ORDER BY id").unwrap();
    st.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|r| r.unwrap() as u64).collect()
}

#[test]
fn a_worker_refuses_sqlite_state_saying_why() {
    let s = Scratch::new();
    s.write("dovetail.toml", "[pipelines.p]\nevery = \"1m\"\n[pipelines.p.source]\nkind = \"files\"\n[[pipelines.p.source.streams]]\nname = \"e\"\npath = \"e.jsonl\"\nprimary_key = [\"id\"]\n[pipelines.p.sink]\nkind = \"sqlite\"\npath = \"out.db\"\n");
    let out = s.run(&["worker"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs PostgreSQL state") && err.contains("dovetail run --every"), "{err}");
    // `[workers]` is validated, naming the key and its line.
    s.write(
        "dovetail.toml",
        &format!(
            "[workers]\nlease = \"2s\"\nheartbeat = \"1500ms\"\n{}",
            std::fs::read_to_string(s.path("dovetail.toml")).unwrap()
        ),
    );
    let out = s.run(&["worker"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dovetail.toml:3") && err.contains("`workers.heartbeat`") && err.contains("half"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_deliver_six_pipelines_once_each_stream_one_holder_at_a_time() {
    let Some(db) = pg::database("fleet_three_workers") else { return };
    let records = 400;
    let faults = Faults { error_503_ratio: 0.05, drop_ratio: 0.01, latency_ms: 2, ..Faults::default() };
    let vendor = FakeVendor::start(VendorConfig { records, faults, seed: 7, ..VendorConfig::default() }).await.unwrap();
    let reference = FakeVendor::start(VendorConfig { records, seed: 7, ..VendorConfig::default() }).await.unwrap();
    let expected: Vec<u64> =
        expected_items(&fetch_all_items(&reference.base_url()).await).iter().map(|r| r.0).collect();
    let s = Scratch::new();
    fleet_config(&s, &db, &vendor.base_url(), 6, 25);
    let mut workers: Vec<Watched> = ["w1", "w2", "w3"].iter().map(|id| worker(&s, &db, id)).collect();
    let c = client(&db).await;
    until_count(&c, "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'", 6, Duration::from_secs(120))
        .await;
    for w in &workers {
        w.terminate();
    }
    for w in &mut workers {
        let (status, _) = w.exit_within(Duration::from_secs(20)).await;
        assert!(status.success(), "SIGTERM ends a worker with 0:\n{}", w.log());
    }
    assert!(vendor.stats().by_status.get(&503).copied().unwrap_or(0) > 0, "faults were injected");
    for n in 0..6 {
        assert_eq!(sink_ids(&s, n), expected, "pipeline p{n}: every record, once");
        let written: i64 = c
            .query_one(
                "SELECT coalesce(sum((report::jsonb -> 'streams' -> 'items' ->> 'written')::bigint), 0)::bigint
                 FROM dovetail.runs WHERE pipeline = $1",
                &[&format!("p{n}")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(written, records as i64, "p{n}: written once across the fleet");
    }
    let events = assert_one_holder_at_a_time(&c).await;
    assert_eq!(events.len(), 6, "{events:?}");
    let holders: std::collections::BTreeSet<String> =
        events.values().flat_map(|v| v.iter().map(|e| e.split(' ').nth(1).unwrap().to_owned())).collect();
    assert!(holders.len() >= 2, "the work was shared: {events:?}");
    let rows: i64 = c.query_one("SELECT count(*) FROM dovetail.schedule_ticks", &[]).await.unwrap().get(0);
    assert_eq!(rows, 6, "one tick per pipeline across the fleet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_taken_over_from_its_last_checkpoint() {
    let Some(db) = pg::database("fleet_kill") else { return };
    let records = 3000;
    let vendor = FakeVendor::start(VendorConfig {
        records,
        faults: Faults { latency_ms: 25, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    fleet_config(&s, &db, &vendor.base_url(), 1, 20);
    let mut w1 = worker(&s, &db, "w1");
    w1.wait_for("claimed a lease", Duration::from_secs(30)).await;
    let c = client(&db).await;
    // Mid-stream: some batches committed, most of the listing still to read.
    until_count(&c, "SELECT count(*) FROM dovetail.ledger", 100, Duration::from_secs(30)).await;
    // While w1 holds the stream: `run` and `reset` are refused, naming it.
    for verb in [&["run", "p0"][..], &["reset", "p0"]] {
        let out = s.cmd(verb).env(PASSWORD_ENV, db.password()).output().unwrap();
        assert_eq!(out.status.code(), Some(11), "{}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("worker `w1` holds stream `items`"), "{}", show(&out));
    }
    let mut w2 = worker(&s, &db, "w2");
    w2.wait_for("worker started", Duration::from_secs(30)).await;
    let killed = Command::new("kill").args(["-KILL", &w1.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let at = Instant::now();
    w2.wait_for("took over an expired lease", LEASE + HEARTBEAT + Duration::from_secs(2)).await;
    assert!(at.elapsed() <= LEASE + HEARTBEAT + Duration::from_millis(1500), "took {:?}", at.elapsed());
    until_count(&c, "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'", 1, Duration::from_secs(60))
        .await;
    let ids = sink_ids(&s, 0);
    assert_eq!(ids, (1..=records).collect::<Vec<_>>(), "0 lost, each key once");
    let events = assert_one_holder_at_a_time(&c).await;
    assert_eq!(events[&("p0".to_owned(), "items".to_owned())], ["claim w1", "takeover w2", "release w2"]);
    // `status` says who took over from whom.
    let status = s.cmd(&["status"]).env(PASSWORD_ENV, db.password()).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("w2 took it over from w1"), "{}", show(&status));
    w2.terminate();
    let (st, _) = w2.exit_within(Duration::from_secs(20)).await;
    assert!(st.success(), "{}", w2.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_wakes_up_fenced_and_the_sink_keeps_the_latest_versions() {
    let Some(db) = pg::database("fleet_stop") else { return };
    let records = 1500;
    let vendor = FakeVendor::start(VendorConfig {
        records,
        faults: Faults { latency_ms: 25, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let sink = format!("kind = \"postgres\"\nurl = \"{}\"\nschema = \"wh\"", state_url(&db));
    fleet_config_with(&s, &db, &vendor.base_url(), 1, 20, Some(&sink), "every = \"1h\"");
    let mut w1 = worker(&s, &db, "w1");
    w1.wait_for("claimed a lease", Duration::from_secs(30)).await;
    let c = client(&db).await;
    until_count(&c, "SELECT count(*) FROM dovetail.ledger", 100, Duration::from_secs(30)).await;
    let stop = |sig: &str| {
        let sent = Command::new("kill").args([sig, &w1.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    };
    // Stall w1 while it waits for a page and has committed everything before it (no
    // transaction open: a worker stopped inside one holds its row locks until PostgreSQL
    // ends the session, docs/deploy.md).
    vendor.set_faults(Faults { latency_ms: 1500, ..Faults::default() });
    let answered = |v: &dovetail_fake_vendor::Stats| v.by_status.values().sum::<u64>();
    let start = Instant::now();
    loop {
        let v = vendor.stats();
        let ledger: i64 = c.query_one("SELECT count(*) FROM dovetail.ledger", &[]).await.unwrap().get(0);
        if answered(&v) < v.requests && ledger as u64 == v.records_served {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "w1 waits on a page with nothing uncommitted: {v:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop("-STOP");
    // The page w1 waits for is answered (it sits in w1's socket), then the vendor changes
    // those records: w1's batch in flight is older than what w2 will read.
    while answered(&vendor.stats()) < vendor.stats().requests {
        assert!(start.elapsed() < Duration::from_secs(30), "the vendor answered every request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    vendor.set_faults(Faults { latency_ms: 25, ..Faults::default() });
    let committed: i64 = c.query_one("SELECT count(*) FROM dovetail.ledger", &[]).await.unwrap().get(0);
    vendor.touch(&((committed as u64 + 1)..=records).collect::<Vec<_>>());
    let mut w2 = worker(&s, &db, "w2");
    w2.wait_for("took over an expired lease", LEASE + Duration::from_secs(10)).await;
    until_count(&c, "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'", 1, Duration::from_secs(60))
        .await;
    stop("-CONT");
    w1.wait_for("unit run finished", Duration::from_secs(10)).await;
    w1.terminate();
    let (st, _) = w1.exit_within(Duration::from_secs(20)).await;
    assert!(st.success(), "{}", w1.log());
    let latest: Vec<(i64, String)> = fetch_all_items(&vendor.base_url())
        .await
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["name"].as_str().unwrap().to_owned()))
        .collect();
    let rows: Vec<(i64, String)> = c
        .query("SELECT id::bigint, name FROM wh.items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), records as usize);
    let stale: Vec<_> = rows.iter().zip(&latest).filter(|(a, b)| a != b).take(5).collect();
    assert!(stale.is_empty(), "the sink holds the vendor's latest version of every key: {stale:?}\n{}", w1.log());
    assert!(w1.count("fenced") > 0, "w1's batch in flight was refused:\n{}", w1.log());
    assert_one_holder_at_a_time(&c).await;
    w2.terminate();
    let (st, _) = w2.exit_within(Duration::from_secs(20)).await;
    assert!(st.success(), "{}", w2.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_releases_and_the_next_worker_resumes_at_once() {
    let Some(db) = pg::database("fleet_sigterm") else { return };
    let records = 3000;
    let vendor = FakeVendor::start(VendorConfig {
        records,
        faults: Faults { latency_ms: 25, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    fleet_config(&s, &db, &vendor.base_url(), 1, 20);
    let mut w1 = worker(&s, &db, "w1");
    w1.wait_for("claimed a lease", Duration::from_secs(30)).await;
    let c = client(&db).await;
    until_count(&c, "SELECT count(*) FROM dovetail.ledger", 100, Duration::from_secs(30)).await;
    w1.terminate();
    let (st, _) = w1.exit_within(Duration::from_secs(20)).await;
    assert!(st.success(), "SIGTERM mid-run exits 0:\n{}", w1.log());
    let committed: i64 = c.query_one("SELECT count(*) FROM dovetail.ledger", &[]).await.unwrap().get(0);
    assert!(committed >= 100 && committed < records as i64, "stopped mid-stream, batches committed: {committed}");
    // Released, and the tick not counted as served: the next worker claims at once (no
    // expiry to wait for) and resumes from the checkpoint.
    let mut cmd = s.cmd(&["worker", "--id", "w2", "--metrics-addr", "127.0.0.1:0"]);
    cmd.env(PASSWORD_ENV, db.password());
    let mut w2 = Watched::spawn(cmd);
    let line = w2.wait_for("metrics on http://", Duration::from_secs(30)).await;
    let url: String =
        line[line.find("http://").unwrap()..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
    w2.wait_for("claimed a lease", Duration::from_secs(5)).await;
    // Ready: the state answers and the lease loop turns.
    let readyz = url.replace("/metrics", "/readyz");
    let resp = reqwest::get(&readyz).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{readyz}");
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(
        (&body["checks"]["state"]["ok"], &body["checks"]["lease_loop"]["ok"]),
        (&true.into(), &true.into()),
        "{body}"
    );
    until_count(&c, "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'", 2, Duration::from_secs(60))
        .await;
    // The worker's own metrics: what it claimed and released, what it holds.
    let start = Instant::now();
    loop {
        let m = dovetail_e2e::watch::Scrape::get(&url).await;
        let (claims, releases) = (
            m.sum("dovetail_worker_lease_events_total", &[("event", "claim")]),
            m.sum("dovetail_worker_lease_events_total", &[("event", "release")]),
        );
        if claims == 1.0 && releases == 1.0 {
            assert_eq!(m.sum("dovetail_worker_leases_held", &[]), 0.0, "{}", m.0);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "claims {claims}, releases {releases}:\n{}", m.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink_ids(&s, 0), (1..=records).collect::<Vec<_>>(), "0 lost, each key once");
    let events = assert_one_holder_at_a_time(&c).await;
    assert_eq!(events[&("p0".to_owned(), "items".to_owned())], ["claim w1", "release w1", "claim w2", "release w2"]);
    let read: i64 = c
        .query_one(
            "SELECT coalesce(sum((report::jsonb -> 'streams' -> 'items' ->> 'read')::bigint), 0)::bigint FROM dovetail.runs",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(read < records as i64 + 200, "w2 resumed from w1's checkpoint rather than the start: {read} read");
    w2.terminate();
    let (st, _) = w2.exit_within(Duration::from_secs(20)).await;
    assert!(st.success(), "{}", w2.log());
}

/// The ticks each `release` of `p0/items` served, in order.
async fn served_ticks(c: &tokio_postgres::Client) -> Vec<i64> {
    c.query("SELECT tick FROM dovetail.lease_history WHERE event = 'release' AND tick IS NOT NULL ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_runs_once_across_the_fleet_and_missed_ticks_run_once() {
    let Some(db) = pg::database("fleet_ticks") else { return };
    let vendor = FakeVendor::start(VendorConfig { records: 40, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    fleet_config_with(&s, &db, &vendor.base_url(), 1, 20, None, "every = \"1s\"");
    let c = client(&db).await;
    let mut workers = vec![worker(&s, &db, "w1"), worker(&s, &db, "w2")];
    until_count(&c, "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'", 3, Duration::from_secs(30))
        .await;
    for w in &workers {
        w.terminate();
    }
    for w in &mut workers {
        assert!(w.exit_within(Duration::from_secs(20)).await.0.success(), "{}", w.log());
    }
    let ticks = served_ticks(&c).await;
    let mut distinct = ticks.clone();
    distinct.dedup();
    assert_eq!(distinct, ticks, "two workers, each tick served once: {ticks:?}");
    // Every worker down for several ticks: the one that returns runs the latest tick once.
    let last = *ticks.last().unwrap();
    while jiff::Timestamp::now().as_second() < last + 4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = jiff::Timestamp::now().as_second();
    let mut w3 = worker(&s, &db, "w3");
    until_count(
        &c,
        "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'",
        ticks.len() as i64 + 1,
        Duration::from_secs(30),
    )
    .await;
    w3.terminate();
    assert!(w3.exit_within(Duration::from_secs(20)).await.0.success(), "{}", w3.log());
    let after: Vec<i64> = served_ticks(&c).await.into_iter().skip(ticks.len()).collect();
    assert!(after[0] >= back, "the missed ticks ({}..{back}) were not run one by one: {after:?}", last + 1);
    let mut distinct = after.clone();
    distinct.dedup();
    assert_eq!(distinct, after, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_stream_is_leased_with_its_parent() {
    let Some(db) = pg::database("fleet_child") else { return };
    let vendor = FakeVendor::start(VendorConfig { records: 30, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    fleet_config(&s, &db, &vendor.base_url(), 1, 20);
    let config = std::fs::read_to_string(s.path("dovetail.toml")).unwrap().replace(
        "\n[pipelines.p0.sink]",
        "\n[[pipelines.p0.source.streams]]\nname = \"comments\"\npath = \"/v1/items/{parent.id}/comments\"\n\
         primary_key = [\"id\"]\nrecords = \"/data\"\nparent = { stream = \"items\", fields = { item_id = \"id\" } }\n\
         \n[pipelines.p0.sink]",
    );
    s.write("dovetail.toml", &config);
    let c = client(&db).await;
    let mut workers = vec![worker(&s, &db, "w1"), worker(&s, &db, "w2")];
    until_count(&c, "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'", 1, Duration::from_secs(60))
        .await;
    for w in &workers {
        w.terminate();
    }
    for w in &mut workers {
        assert!(w.exit_within(Duration::from_secs(20)).await.0.success(), "{}", w.log());
    }
    let rows = c.query("SELECT unit, streams FROM dovetail.leases", &[]).await.unwrap();
    let units: Vec<(String, Vec<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(units, [("items".to_owned(), vec!["items".to_owned(), "comments".to_owned()])], "one unit");
    assert_one_holder_at_a_time(&c).await;
    let db = s.db("out_0.db");
    let n = |t: &str| db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(n("items"), 30);
    assert!(n("comments") > 0, "the child stream ran in its parent's lease");
}

/// `/readyz` of the worker serving metrics at `url`: polled until it answers `status`.
async fn readyz_until(url: &str, status: u16, within: Duration) -> serde_json::Value {
    let readyz = url.replace("/metrics", "/readyz");
    let start = Instant::now();
    loop {
        if let Ok(resp) = reqwest::get(&readyz).await {
            let got = resp.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or_default();
            if got == status {
                return body;
            }
            assert!(start.elapsed() < within, "/readyz stayed {got} ({body}), not {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_while_workers_run_they_reconnect_and_deliver_everything_once() {
    // A cluster of this test's own: stopping the shared one would cut the other tests off.
    let Some(cluster) = pg::Cluster::start("fleet_restart", &pg::ClusterOptions::default()) else { return };
    let db = cluster.database("fleet_restart");
    let records = 1500;
    let vendor = FakeVendor::start(VendorConfig {
        records,
        faults: Faults { latency_ms: 20, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    fleet_config(&s, &db, &vendor.base_url(), 3, 20);
    let mut cmd = s.cmd(&["worker", "--id", "w1", "--concurrency", "2", "--metrics-addr", "127.0.0.1:0"]);
    cmd.env(PASSWORD_ENV, db.password());
    let mut workers = vec![Watched::spawn(cmd), worker(&s, &db, "w2"), worker(&s, &db, "w3")];
    let line = workers[0].wait_for("metrics on http://", Duration::from_secs(30)).await;
    let url: String =
        line[line.find("http://").unwrap()..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
    let c = client(&db).await;
    // Mid-run: batches committed, most of every listing still to read.
    until_count(&c, "SELECT count(*) FROM dovetail.ledger", 150, Duration::from_secs(60)).await;
    readyz_until(&url, 200, Duration::from_secs(10)).await;
    drop(c);
    // Down for longer than a lease: every lease has expired when the server returns.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    let down = Instant::now();
    let body = readyz_until(&url, 503, Duration::from_secs(10)).await;
    assert_eq!(body["checks"]["state"]["ok"], false, "{body}");
    assert!(!body.to_string().contains(db.password()), "a secret in /readyz: {body}");
    tokio::time::sleep((LEASE + Duration::from_secs(1)).saturating_sub(down.elapsed())).await;
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    readyz_until(&url, 200, Duration::from_secs(30)).await;
    let c = client(&db).await;
    until_count(&c, "SELECT count(*) FROM dovetail.lease_history WHERE event = 'release'", 3, Duration::from_secs(120))
        .await;
    for w in &mut workers {
        assert!(w.child.try_wait().unwrap().is_none(), "a worker stays up through the restart:\n{}", w.log());
    }
    for w in &workers {
        w.terminate();
    }
    for w in &mut workers {
        let (status, _) = w.exit_within(Duration::from_secs(20)).await;
        assert!(status.success(), "SIGTERM ends a worker with 0:\n{}", w.log());
    }
    let logs: String = workers.iter().map(Watched::log).collect::<Vec<_>>().join("\n");
    assert!(logs.contains("reconnecting"), "the workers reconnected:\n{logs}");
    assert!(!logs.contains(db.password()), "no password in the logs");
    let events = assert_one_holder_at_a_time(&c).await;
    for n in 0..3 {
        let ids = sink_ids(&s, n);
        assert!(ids == (1..=records).collect::<Vec<_>>(), "p{n}: {} of {records} keys: {events:?}\n{logs}", ids.len());
    }
    assert_eq!(events.len(), 3, "{events:?}");
    for (unit, ev) in &events {
        assert_eq!(ev.iter().filter(|e| e.starts_with("release")).count(), 1, "{unit:?}: {ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_resume_and_replay_of_one_stream_are_refused_only_while_a_worker_holds_that_stream() {
    let Some(db) = pg::database("fleet_per_stream") else { return };
    let records = 3000;
    let vendor = FakeVendor::start(VendorConfig {
        records,
        faults: Faults { latency_ms: 50, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    fleet_config(&s, &db, &vendor.base_url(), 1, 20);
    // A second unit of p0: stream `other`, which the worker (concurrency 1) claims only after `items`.
    let config = std::fs::read_to_string(s.path("dovetail.toml")).unwrap().replace(
        "\n[pipelines.p0.sink]",
        "\n[[pipelines.p0.source.streams]]\nname = \"other\"\npath = \"/v1/items\"\nprimary_key = [\"id\"]\n\
         records = \"/data\"\n\n[pipelines.p0.sink]",
    );
    s.write("dovetail.toml", &config);
    let c = client(&db).await;
    let mut cmd = s.cmd(&["worker", "--id", "w1", "--concurrency", "1"]);
    cmd.env(PASSWORD_ENV, db.password());
    let mut w1 = Watched::spawn(cmd);
    w1.wait_for("claimed a lease", Duration::from_secs(30)).await;
    until_count(&c, "SELECT count(*) FROM dovetail.ledger", 20, Duration::from_secs(30)).await;
    // A dead letter in each stream, to replay by id.
    let mut ids = Vec::new();
    for (n, stream) in ["items", "other"].iter().enumerate() {
        let raw = format!("{{\"id\": {}, \"name\": \"replayed\"}}", 900_000 + n);
        let row = c
            .query_one(
                "INSERT INTO dovetail.dead_letters (pipeline, stream, kind, reason, raw, raw_hash, created_at, last_seen_at)
                 VALUES ('p0', $1, 'mapping', 'a test', $2, $3, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z') RETURNING id",
                &[stream, &raw.as_bytes(), &vec![n as u8; 16]],
            )
            .await
            .unwrap();
        ids.push(row.get::<_, i64>(0).to_string());
    }
    let run = |args: &[&str]| s.cmd(args).env(PASSWORD_ENV, db.password()).output().unwrap();
    // `items` is w1's: every verb on it (or on the whole pipeline) is refused, naming w1.
    for verb in [
        &["reset", "p0", "items"][..],
        &["resume", "p0", "items"],
        &["reset", "p0"],
        &["dead-letters", "replay", "--id", &ids[0]],
    ] {
        let out = run(verb);
        assert_eq!(out.status.code(), Some(11), "{verb:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("worker `w1` holds stream `items`"), "{}", show(&out));
    }
    // `other` is no one's: allowed while w1 runs `items`.
    for verb in
        [&["reset", "p0", "other"][..], &["resume", "p0", "other"], &["dead-letters", "replay", "--id", &ids[1]]]
    {
        let out = run(verb);
        assert_eq!(out.status.code(), Some(0), "{verb:?}: {}", show(&out));
    }
    assert!(show(&run(&["dead-letters", "list"])).contains("a test"), "the refused replay kept its dead letter");
    let held: Option<String> = c
        .query_one("SELECT holder FROM dovetail.leases WHERE pipeline = 'p0' AND unit = 'items'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held.as_deref(), Some("w1"), "the checks ran while w1 held `items`");
    w1.terminate();
    assert!(w1.exit_within(Duration::from_secs(20)).await.0.success(), "{}", w1.log());
}
