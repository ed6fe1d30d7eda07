//! What `dovetail explain` needs, in PostgreSQL: the same encoding as the SQLite store
//! (`dovetail_state::encode_explain`: a written record's story is four columns on its
//! ledger row, pages hold the raw records), written in the commit's transaction, read per
//! key in one snapshot, pruned past retention in small transactions.

use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use dovetail_core::explain::{
    ExplainBatch, KeyHistory, LedgerView, Outcome, Pruned, Retention, StoredFetch, StoredStory, method_of,
};
use dovetail_core::state::Commit;
use dovetail_core::{ContentHash, Error, Key};
use tokio_postgres::Row;

use crate::history::{DEAD_LETTER_COLS, dead_letter_row};
use crate::{PgState, limit, text};

/// A ledger row's story columns: run, fetch row id, line in the page's records, outcome.
pub(crate) type StoryCols = (i64, i64, i64, i64);

/// Write a commit's pages, dead-letter stories and the stream's mapping for the run; return
/// the story columns of each ledger row.
pub(crate) async fn write(
    st: &PgState,
    tx: &ClientWrapper,
    sid: i64,
    c: &Commit,
    x: &ExplainBatch,
) -> Result<Vec<Option<StoryCols>>, Error> {
    if x.fetches.is_empty() && x.stories.is_empty() {
        return Ok(Vec::new());
    }
    let enc = dovetail_state::encode_explain(c, x);
    let cols = serde_json::to_string(&x.key_columns[..]).unwrap_or_else(|_| "[]".into());
    // The mapping and the pages go out pipelined (one round trip once prepared).
    let mapping = async {
        let ins = tx
            .prepare_cached(
                "INSERT INTO explain_runs (stream_id, run_id, mapping, key_columns) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(|e| st.err("preparing the explain mapping insert", e))?;
        tx.execute(&ins, &[&sid, &x.run_id, &x.mapping.as_deref(), &cols])
            .await
            .map_err(|e| st.err("recording the stream's mapping for explain", e))
    };
    let pages = async {
        let ins = tx
            .prepare_cached(
                "INSERT INTO explain_fetches (stream_id, run_id, url, status, request_id, api_version,
                   fetched_at, stale, connector, records, unchanged)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .await
            .map_err(|e| st.err("preparing the fetch insert", e))?;
        let mut ids = Vec::with_capacity(x.fetches.len());
        for (f, (records, unchanged)) in x.fetches.iter().zip(enc.pages) {
            let p = &f.provenance;
            let status = p.status.map(i32::from);
            let records = records.as_deref().map(str::as_bytes);
            let row = tx
                .query_one(
                    &ins,
                    &[
                        &sid,
                        &x.run_id,
                        &&*text(&p.endpoint),
                        &status,
                        &p.request_id,
                        &p.api_version,
                        &p.fetched_at,
                        &p.stale,
                        &p.connector,
                        &records,
                        &unchanged,
                    ],
                )
                .await
                .map_err(|e| st.err("recording a fetch", e))?;
            ids.push(row.get::<_, i64>(0));
        }
        Ok::<_, Error>(ids)
    };
    let (_, ids): (u64, Vec<i64>) = tokio::try_join!(biased; mapping, pages)?;
    if !enc.dead.is_empty() {
        let up = tx
            .prepare_cached(
                "INSERT INTO explain_stories (stream_id, key, run_id, fetch_id, location, outcome, reason, raw)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (stream_id, key) DO UPDATE SET run_id = excluded.run_id,
                   fetch_id = excluded.fetch_id, location = excluded.location, outcome = excluded.outcome,
                   reason = excluded.reason, raw = excluded.raw",
            )
            .await
            .map_err(|e| st.err("preparing the story upsert", e))?;
        for (i, raw) in enc.dead {
            let s = &x.stories[i];
            let fetch = s.fetch.and_then(|i| ids.get(i)).copied();
            let location = s.location.as_deref().map(text);
            let reason = s.reason.as_deref().map(text);
            tx.execute(
                &up,
                &[
                    &sid,
                    &s.key.as_str(),
                    &x.run_id,
                    &fetch,
                    &location.as_deref(),
                    &s.outcome.as_str(),
                    &reason.as_deref(),
                    &raw.as_deref().map(str::as_bytes),
                ],
            )
            .await
            .map_err(|e| st.err("recording a record's story", e))?;
        }
    }
    Ok(enc.ledger.into_iter().map(|o| o.map(|(f, line, outcome)| (x.run_id, ids[f], line, outcome))).collect())
}

const FETCH_COLS: &str = "run_id, url, status, request_id, api_version, fetched_at, stale, connector";

fn fetch_row(r: &Row) -> StoredFetch {
    let url: String = r.get(1);
    StoredFetch {
        run_id: r.get(0),
        method: method_of(&url).to_owned(),
        url,
        status: r.get::<_, Option<i32>>(2).and_then(|s| u16::try_from(s).ok()),
        request_id: r.get(3),
        api_version: r.get(4),
        fetched_at: r.get(5),
        stale: r.get(6),
        connector: r.get(7),
    }
}

/// Everything stored about one key, read in one repeatable-read snapshot.
pub(crate) async fn key_history(st: &PgState, pipeline: &str, stream: &str, key: &Key) -> Result<KeyHistory, Error> {
    let mut h = KeyHistory::default();
    let mut c = st.conn().await?;
    let sid = st.stream_id(&c, pipeline, stream).await?;
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| st.err("starting an explain read", e))?;
    let err = |what: &'static str| move |e| st.err(what, e);
    let dl_sql = format!(
        "SELECT {DEAD_LETTER_COLS} FROM dead_letters WHERE pipeline = $1 AND stream = $2 AND key = $3
         ORDER BY id DESC LIMIT 1"
    );
    h.dead_letter = tx
        .query_opt(&dl_sql, &[&pipeline, &stream, &key.as_str()])
        .await
        .map_err(err("reading the key's dead letter"))?
        .as_ref()
        .map(dead_letter_row);
    let Some(sid) = sid else {
        return Ok(h);
    };
    let k = key.as_str();
    let fetch_sql = format!("SELECT {FETCH_COLS}, records FROM explain_fetches WHERE id = $1");
    let mut written: Option<(StoredStory, i64)> = None;
    let row = tx
        .query_opt(
            "SELECT hash, pass, dest_id, run_id, fetch_id, item, outcome FROM ledger WHERE stream_id = $1 AND key = $2",
            &[&sid, &k],
        )
        .await
        .map_err(err("reading the key's ledger row"))?;
    if let Some(r) = row {
        let hash: Vec<u8> = r.get(0);
        let hash = <[u8; 16]>::try_from(hash.as_slice()).map(|b| ContentHash(b).to_hex()).unwrap_or_default();
        h.ledger = Some(LedgerView { hash, pass: r.get::<_, i64>(1).max(0) as u64, dest_id: r.get(2) });
        let (run, fid, item, outcome): (Option<i64>, Option<i64>, Option<i64>, Option<i64>) =
            (r.get(3), r.get(4), r.get(5), r.get(6));
        if let (Some(run), Some(fid), Some(outcome)) = (run, fid, outcome) {
            let page = tx.query_opt(&fetch_sql, &[&fid]).await.map_err(err("reading a fetch"))?;
            let line = page.as_ref().and_then(|p| {
                let recs: Option<Vec<u8>> = p.get(8);
                let recs = String::from_utf8_lossy(&recs?).into_owned();
                recs.split('\n').nth(usize::try_from(item?).ok()?).map(str::to_owned)
            });
            let (location, raw) = match line.as_deref().and_then(|l| l.split_once('\t')) {
                Some((loc, raw)) => {
                    ((!loc.is_empty()).then(|| loc.to_owned()), (!raw.is_empty()).then(|| raw.to_owned()))
                }
                None => (None, None),
            };
            let outcome = if outcome == 2 { Outcome::Updated } else { Outcome::Inserted };
            let fetch = page.as_ref().map(fetch_row);
            written = Some((StoredStory { run_id: run, outcome, reason: None, raw, location, fetch }, fid));
        }
    }
    let dead = tx
        .query_opt(
            "SELECT run_id, fetch_id, location, outcome, reason, raw FROM explain_stories
             WHERE stream_id = $1 AND key = $2",
            &[&sid, &k],
        )
        .await
        .map_err(err("reading the key's dead-letter story"))?;
    let dead = match dead {
        Some(r) => {
            let stored: String = r.get(3);
            let outcome = Outcome::parse(&stored)
                .ok_or_else(|| Error::internal(format!("state store: unknown stored outcome `{stored}`")))?;
            let fetch_id: Option<i64> = r.get(1);
            let fetch = match fetch_id {
                Some(id) => {
                    tx.query_opt(&fetch_sql, &[&id]).await.map_err(err("reading a fetch"))?.as_ref().map(fetch_row)
                }
                None => None,
            };
            let raw: Option<Vec<u8>> = r.get(5);
            let raw = raw.map(|b| String::from_utf8_lossy(&b).into_owned());
            let story = StoredStory { run_id: r.get(0), outcome, reason: r.get(4), raw, location: r.get(2), fetch };
            Some((story, fetch_id))
        }
        None => None,
    };
    let latest = dovetail_state::latest_story(written, dead);
    let (after_id, min_run) = latest.as_ref().map_or((0, 0), |(s, f)| (*f, s.run_id));
    h.story = latest.map(|l| l.0);
    let needle = format!("\n{k}\n");
    h.unchanged = tx
        .query_opt(
            &format!(
                "SELECT {FETCH_COLS} FROM explain_fetches
                 WHERE stream_id = $1 AND id > $2 AND run_id >= $3 AND unchanged IS NOT NULL
                   AND strpos(E'\\n' || unchanged, $4) > 0
                 ORDER BY id DESC LIMIT 1"
            ),
            &[&sid, &after_id, &min_run, &needle],
        )
        .await
        .map_err(err("looking for unchanged reads of the key"))?
        .as_ref()
        .map(fetch_row);
    let run = h.unchanged.as_ref().map(|f| f.run_id).or(h.story.as_ref().map(|s| s.run_id));
    if let Some(run) = run {
        let row = tx
            .query_opt(
                "SELECT mapping, key_columns FROM explain_runs WHERE stream_id = $1 AND run_id = $2",
                &[&sid, &run],
            )
            .await
            .map_err(err("reading the mapping of a run"))?;
        if let Some(r) = row {
            let (mapping, cols): (Option<String>, String) = (r.get(0), r.get(1));
            h.mapping = mapping.and_then(|m| serde_json::from_str(&m).ok());
            h.key_columns = serde_json::from_str(&cols).unwrap_or_default();
        }
    }
    tx.commit().await.map_err(err("ending an explain read"))?;
    Ok(h)
}

/// `now - age` as RFC 3339, for comparisons with stored times (all UTC, `Z`).
fn cutoff(age: Duration) -> String {
    let back = jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX);
    jiff::Timestamp::now().checked_sub(back).unwrap_or(jiff::Timestamp::MIN).to_string()
}

/// Repeat a batched `DELETE` (its last parameter the batch size), one short transaction
/// each, until it deletes fewer than `batch` rows.
async fn drain(
    st: &PgState,
    what: &'static str,
    sql: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    batch: usize,
) -> Result<u64, Error> {
    let c = st.conn().await?;
    let n = limit(batch);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args.to_vec();
    params.push(&n);
    let mut total = 0;
    loop {
        let done = c.execute(sql, &params).await.map_err(|e| st.err(what, e))?;
        total += done;
        if done < batch as u64 {
            return Ok(total);
        }
    }
}

/// Prune one pipeline's history past `r` (see [`Retention`]).
pub(crate) async fn prune(st: &PgState, pipeline: &str, r: &Retention) -> Result<Pruned, Error> {
    let batch = r.batch.max(1);
    let mut out = Pruned::default();
    let age = r.max_age.map(cutoff);
    let keep_from: Option<i64> = {
        let c = st.conn().await?;
        let n = limit(r.runs.map_or(usize::MAX, |n| n.max(1) as usize));
        let rows = c
            .query("SELECT id, started_at FROM runs WHERE pipeline = $1 ORDER BY id DESC LIMIT $2", &[&pipeline, &n])
            .await
            .map_err(|e| st.err("listing runs to keep", e))?;
        let rows: Vec<(i64, String)> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        rows.iter()
            .enumerate()
            .take_while(|(i, (_, started))| *i == 0 || age.as_deref().is_none_or(|a| started.as_str() >= a))
            .last()
            .map(|(_, (id, _))| *id)
    };
    if let Some(from) = keep_from {
        out.runs = drain(
            st,
            "pruning runs",
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE pipeline = $1 AND id < $2 LIMIT $3)",
            &[&pipeline, &from],
            batch,
        )
        .await?;
        let streams: Vec<i64> = {
            let c = st.conn().await?;
            let rows = c
                .query("SELECT id FROM streams WHERE pipeline = $1", &[&pipeline])
                .await
                .map_err(|e| st.err("listing streams", e))?;
            rows.into_iter().map(|r| r.get(0)).collect()
        };
        for sid in streams {
            out.fetches += drain(
                st,
                "pruning fetches",
                "DELETE FROM explain_fetches WHERE id IN
                   (SELECT id FROM explain_fetches WHERE stream_id = $1 AND run_id < $2 LIMIT $3)",
                &[&sid, &from],
                batch,
            )
            .await?;
            drain(
                st,
                "pruning explain runs",
                "DELETE FROM explain_runs WHERE (stream_id, run_id) IN
                   (SELECT stream_id, run_id FROM explain_runs WHERE stream_id = $1 AND run_id < $2 LIMIT $3)",
                &[&sid, &from],
                batch,
            )
            .await?;
            out.stories += drain(
                st,
                "pruning stories",
                "DELETE FROM explain_stories WHERE (stream_id, key) IN
                   (SELECT stream_id, key FROM explain_stories WHERE stream_id = $1 AND run_id < $2 LIMIT $3)",
                &[&sid, &from],
                batch,
            )
            .await?;
        }
    }
    if let Some(a) = &age {
        out.drift_events = drain(
            st,
            "pruning drift events",
            "DELETE FROM drift_events WHERE id IN (SELECT id FROM drift_events
               WHERE pipeline = $1 AND accepted_at IS NOT NULL AND last_seen < $2 LIMIT $3)",
            &[&pipeline, a],
            batch,
        )
        .await?;
    }
    if let Some(d) = r.dead_letters_max_age {
        let cut = cutoff(d);
        out.dead_letters = drain(
            st,
            "pruning dead letters",
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters
               WHERE pipeline = $1 AND last_seen_at < $2 LIMIT $3)",
            &[&pipeline, &cut],
            batch,
        )
        .await?;
    }
    Ok(out)
}
