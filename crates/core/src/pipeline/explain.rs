//! Capturing each record's story for `dovetail explain` (types and rules in
//! [`crate::explain`]).
//!
//! The mapper notes every page's provenance and the keys it found unchanged ([`Trail`]);
//! the writer turns a batch into stories once the sink answered ([`Capture`]), and the
//! stories ride in the batch's [`Commit`](crate::state::Commit), so they are committed in
//! the same transaction as the ledger rows. Nothing is serialized here: the raw records
//! travel as the shared batch and the state store encodes them off the writer's path.

use std::sync::Arc;

use serde_json::Value;

use super::prepare::Prepared;
use crate::error::Error;
use crate::explain::{ExplainBatch, ExplainCapture, Fetch, Outcome, Story};
use crate::record::{Provenance, Record};
use crate::state::DeadLetter;

/// What a stream's captures share for a whole run.
#[derive(Clone)]
pub(super) struct Ctx {
    pub run_id: i64,
    pub mode: ExplainCapture,
    pub mapping: Option<Arc<str>>,
    pub key_columns: Arc<[String]>,
}

impl Ctx {
    /// The context of one stream's run (`run_id` 0, a dry run, captures nothing).
    pub fn new(
        run_id: i64,
        mode: ExplainCapture,
        mapping: Option<&Arc<dyn crate::connector::Transform>>,
        key_columns: &[String],
    ) -> Ctx {
        let mode = if run_id == 0 { ExplainCapture::Off } else { mode };
        let mapping = mapping.and_then(|m| m.describe()).map(|v| crate::record::canonical_json(&v).into());
        Ctx { run_id, mode, mapping, key_columns: key_columns.into() }
    }

    /// An empty trail for one page.
    pub fn trail(self: &Arc<Self>) -> Trail {
        Trail { on: self.mode != ExplainCapture::Off, fetches: Vec::new(), ctx: self.clone() }
    }

    /// Start a batch's capture: a story per record about to be written.
    fn capture(&self, trail: Trail, to_write: &[Prepared]) -> Capture {
        if !trail.on {
            return Capture { batch: None, full: false };
        }
        let mut last = 0;
        let stories = to_write
            .iter()
            .enumerate()
            .map(|(i, p)| Story {
                key: p.key.clone(),
                fetch: trail.index_of(&p.record.provenance, &mut last),
                location: None,
                outcome: if p.known { Outcome::Updated } else { Outcome::Inserted },
                reason: None,
                raw: None,
                item: Some(i),
            })
            .collect();
        let batch = ExplainBatch {
            run_id: self.run_id,
            mapping: self.mapping.clone(),
            key_columns: self.key_columns.clone(),
            fetches: trail.fetches,
            stories,
            records: None,
            raws: Vec::new(),
            with_raw: false,
            locations: Vec::new(),
        };
        Capture { batch: Some(batch), full: self.mode == ExplainCapture::Full }
    }
}

/// The pages of a batch, as the mapper saw them.
pub(super) struct Trail {
    on: bool,
    fetches: Vec<Fetch>,
    ctx: Arc<Ctx>,
}

impl Trail {
    /// Start the batch's capture: a story per record about to be written.
    pub fn capture(self, to_write: &[Prepared]) -> Capture {
        let ctx = self.ctx.clone();
        ctx.capture(self, to_write)
    }

    /// A page arrived; its records share one provenance (pages without records fetch nothing
    /// a key could point at).
    pub fn page(&mut self, records: &[Record]) {
        if let (true, Some(r)) = (self.on, records.first()) {
            self.fetches.push(Fetch { provenance: r.provenance.clone(), unchanged: Vec::new() });
        }
    }

    /// A record was read unchanged: its key joins its page's list (no row of its own).
    pub fn unchanged(&mut self, p: &Prepared) {
        if !self.on {
            return;
        }
        let mut last = self.fetches.len().saturating_sub(1);
        if let Some(i) = self.index_of(&p.record.provenance, &mut last) {
            self.fetches[i].unchanged.push(p.key.clone());
        }
    }

    /// Append a later page's trail (pages merged into one batch).
    pub fn absorb(&mut self, later: Trail) {
        self.fetches.extend(later.fetches);
    }

    /// The fetch of a provenance; `hint` is where the previous lookup matched (records come
    /// in page order, so this is almost always one comparison).
    fn index_of(&self, prov: &Arc<Provenance>, hint: &mut usize) -> Option<usize> {
        let n = self.fetches.len();
        (0..n)
            .map(|d| (*hint + d) % n)
            .find(|&i| Arc::ptr_eq(&self.fetches[i].provenance, prov))
            .inspect(|&i| *hint = i)
    }
}

/// One batch's stories, finished once the sink answered.
pub(super) struct Capture {
    batch: Option<ExplainBatch>,
    full: bool,
}

impl Capture {
    /// The written records and their raw inputs (shared with the sink batch, not copied);
    /// `rejected` are the indices the sink refused (they become dead-letter stories).
    pub fn written(&mut self, records: &Arc<[Record]>, raws: Vec<Option<Value>>, rejected: &[usize]) {
        let Some(b) = &mut self.batch else { return };
        if !rejected.is_empty() {
            b.stories.retain(|s| s.item.is_none_or(|i| !rejected.contains(&i)));
        }
        b.with_raw = self.full;
        if self.full {
            b.records = Some(records.clone());
            b.raws = raws;
        } else {
            // Without raw capture, holding the batch's records until the commit would cost
            // memory for a location each.
            b.locations = records.iter().map(|r| r.location).collect();
        }
    }

    /// The batch for the commit, with a story per dead letter that has a key.
    pub fn finish(self, dead: &[DeadLetter]) -> Option<ExplainBatch> {
        let mut b = self.batch?;
        for d in dead {
            let Some(key) = &d.key else { continue };
            // The page it came from: its location is `<endpoint> <item/line>`.
            let fetch = d.location.as_deref().and_then(|l| {
                b.fetches.iter().rposition(|f| {
                    let e = &f.provenance.endpoint;
                    l.strip_prefix(e.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
                })
            });
            b.stories.push(Story {
                key: crate::record::Key::from_canonical(key.clone()),
                fetch,
                location: d.location.clone(),
                outcome: Outcome::DeadLettered,
                reason: Some(d.reason.clone()),
                raw: self.full.then(|| d.raw.clone()),
                item: None,
            });
        }
        Some(b)
    }
}

/// The output primary-key columns of a stream: configured, else the source's key fields
/// carried through the mapping.
/// Output key columns are top-level fields (sinks make them columns), so a key that is still
/// a nested path after the mapping is a config error naming the mapping that lifts it.
pub(super) fn key_columns(spec: &crate::stream::StreamSpec, opts: &super::StreamOptions) -> Result<Vec<String>, Error> {
    let columns: Vec<String> = match &opts.primary_key {
        Some(pk) => pk.clone(),
        None => {
            let mapping = opts.mapping.as_deref();
            spec.primary_key
                .iter()
                .map(|p| match mapping {
                    None => Ok(p.as_str().to_owned()),
                    Some(m) => m.output_path(p.as_str()).ok_or_else(|| {
                        Error::config(format!("the mapping drops primary key field `{p}`; keep it or set `primary_key` for the stream to the output column"))
                    }),
                })
                .collect::<Result<_, _>>()?
        }
    };
    if let Some(nested) = columns.iter().find(|c| c.contains(['.', '['])) {
        let leaf = nested.rsplit(['.', '[']).next().unwrap_or(nested).trim_end_matches(']');
        return Err(Error::config(format!(
            "primary key `{nested}` is a nested field; a key is a top-level field: lift it with the stream's mapping, `columns = {{ {leaf} = \"{nested}\" }}`, and the key follows it"
        ))
        .in_stream(&spec.name));
    }
    Ok(columns)
}
