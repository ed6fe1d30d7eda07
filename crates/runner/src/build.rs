//! From config to connectors: build each pipeline's source and sink from the registry
//! and check its stream settings against what the source exposes.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use dovetail_core::remote::{ResponseCache, TokenStore};
use dovetail_core::{BuildCx, Error, Pipeline, Sink, Source, StateStore, StreamOptions};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::PipelineConfig;
use crate::diag::{self, Doc, lookup, offset_of};
use crate::own_files::OwnFiles;
use crate::registry::{self, BuildError};

/// One pipeline, ready to be handed a state store.
pub struct PipelineSpec {
    /// Name.
    pub name: String,
    /// Built source.
    pub source: Arc<dyn Source>,
    /// Built sink.
    pub sink: Arc<dyn Sink>,
    /// Per-stream settings.
    pub streams: BTreeMap<String, StreamOptions>,
    /// Records per batch.
    pub batch_size: Option<usize>,
    /// Dead-letter count threshold.
    pub max_dead_letters: Option<u64>,
    /// Dead-letter ratio threshold.
    pub max_dead_letter_ratio: Option<f64>,
    /// Outbox bound per stream.
    pub outbox_max: Option<u64>,
    /// Where and when alerts go (`[pipelines.NAME.alerts]`).
    pub alerts: Option<crate::alerts::AlertsConfig>,
    /// What drifting records get, per change class.
    pub drift: dovetail_core::DriftPolicy,
    /// What runs keep for `dovetail explain` (`[state] explain`).
    pub explain: dovetail_core::explain::ExplainCapture,
    /// History retention (`[state.retention]`; `None`: never prune).
    pub retention: Option<dovetail_core::explain::Retention>,
    /// When `dovetail worker` runs it (`None`: workers leave it alone).
    pub schedule: Option<crate::schedule::PipelineSchedule>,
    /// Child stream → parent stream (REST): a child is leased with its parent.
    pub parents: BTreeMap<String, String>,
}

impl PipelineSpec {
    /// Names of the source's streams.
    pub fn stream_names(&self) -> Vec<String> {
        self.source.streams().into_iter().map(|s| s.name).collect()
    }

    /// The engine's pipeline over `state`.
    pub fn build(&self, state: Arc<dyn StateStore>) -> Result<Pipeline, Error> {
        let mut b = Pipeline::builder(&self.name)
            .source_arc(self.source.clone())
            .sink_arc(self.sink.clone())
            .state_arc(state)
            .max_dead_letters(self.max_dead_letters)
            .max_dead_letter_ratio(self.max_dead_letter_ratio)
            .drift_policy(self.drift);
        if let Some(n) = self.batch_size {
            b = b.batch_size(n);
        }
        if let Some(n) = self.outbox_max {
            b = b.outbox_max(n);
        }
        b = b.explain(self.explain);
        if let Some(r) = &self.retention {
            b = b.retention(r.clone());
        }
        for (name, opts) in &self.streams {
            b = b.stream(name.clone(), opts.clone());
        }
        b.build()
    }
}

fn connector_table<'i>(
    doc: &Doc,
    root: &DeTable<'i>,
    name: &str,
    role: &str,
) -> Result<(Range<usize>, Spanned<DeTable<'i>>), Error> {
    let (key, value) = lookup(root, &["pipelines", name, role])
        .ok_or_else(|| doc.error_nowhere(format!("[pipelines.{name}] has no `{role}`")))?;
    let DeValue::Table(t) = value.get_ref() else {
        return Err(doc.error(key.start, format!("`{role}` in [pipelines.{name}] must be a table")));
    };
    let mut t = t.clone();
    let kind_span = t.remove_entry("kind").map(|(_, v)| v.span()).unwrap_or(key);
    Ok((kind_span, Spanned::new(value.span(), t)))
}

fn unknown_kind(doc: &Doc, at: usize, role: &str, name: &str, kind: &str, known: &[&str]) -> Error {
    let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let hint = diag::nearest(kind, known.iter().copied()).map(|n| format!("did you mean `{n}`? ")).unwrap_or_default();
    doc.error(
        at,
        format!("unknown {role} kind `{kind}` in [pipelines.{name}.{role}]; {hint}(known {role} kinds: {list})"),
    )
}

fn build_failed(doc: &Doc, root: &DeTable<'_>, at: usize, role: &str, name: &str, kind: &str, e: BuildError) -> Error {
    match e {
        BuildError::Toml(e) => diag::toml_error(doc, root, &e),
        BuildError::Build(e) => {
            let wrapped = Error::new(
                e.kind().clone(),
                format!("{}: {role} `{kind}` of [pipelines.{name}]: {}", doc.at(at), e.report()),
            );
            // The connector knows better than the kind what to change.
            match e.hint() {
                Some(h) => wrapped.with_hint(h),
                None => wrapped,
            }
        }
    }
}

pub fn build_pipeline(
    doc: &Doc,
    root: &DeTable<'_>,
    name: &str,
    pc: &PipelineConfig,
    stores: &(Arc<dyn TokenStore>, Arc<dyn ResponseCache>),
    own: &OwnFiles,
) -> Result<PipelineSpec, Error> {
    if let Some(a) = &pc.alerts {
        a.validate(doc, root, name)?;
    }
    let cx = BuildCx {
        base_dir: doc.base_dir.clone(),
        pipeline: name.to_owned(),
        token_store: Some(stores.0.clone()),
        response_cache: Some(stores.1.clone()),
        places: BTreeMap::new(),
    };

    let (kind_span, table) = connector_table(doc, root, name, "source")?;
    let sources = registry::sources();
    let kinds: Vec<&str> = sources.iter().map(|e| e.kind).collect();
    let entry = sources
        .iter()
        .find(|e| e.kind == pc.source.kind)
        .ok_or_else(|| unknown_kind(doc, kind_span.start, "source", name, &pc.source.kind, &kinds))?;
    let source_cx = BuildCx { places: places(doc, &table), ..cx.clone() };
    let source = (entry.build)(table, &source_cx)
        .map_err(|e| build_failed(doc, root, kind_span.start, "source", name, entry.kind, e))?;

    let (kind_span, table) = connector_table(doc, root, name, "sink")?;
    let sinks = registry::sinks();
    let kinds: Vec<&str> = sinks.iter().map(|e| e.kind).collect();
    let entry = sinks
        .iter()
        .find(|e| e.kind == pc.sink.kind)
        .ok_or_else(|| unknown_kind(doc, kind_span.start, "sink", name, &pc.sink.kind, &kinds))?;
    let cx = BuildCx { places: places(doc, &table), ..cx };
    let sink =
        (entry.build)(table, &cx).map_err(|e| build_failed(doc, root, kind_span.start, "sink", name, entry.kind, e))?;

    let at = |key: &str| offset_of(root, &["pipelines", name, key]);
    let schedule =
        crate::schedule::PipelineSchedule::parse(pc.schedule.as_deref(), pc.timezone.as_deref(), pc.every.as_deref())
            .map_err(|(key, why)| doc.error(at(key), format!("`{key}` in [pipelines.{name}]: {why}")))?;
    if let Some(r) = pc.max_dead_letter_ratio.filter(|r| !(0.0..=1.0).contains(r)) {
        return Err(doc.error(
            at("max_dead_letter_ratio"),
            format!("`max_dead_letter_ratio` in [pipelines.{name}] must be between 0.0 and 1.0, found {r}"),
        ));
    }

    let available: Vec<String> = source.streams().into_iter().map(|s| s.name).collect();
    own.check_sink(doc, root, name, sink.as_ref(), &available)?;
    let mut streams = BTreeMap::new();
    for (stream, sc) in &pc.streams {
        let here = |key: Option<&str>| match key {
            Some(k) => offset_of(root, &["pipelines", name, "streams", stream, k]),
            None => offset_of(root, &["pipelines", name, "streams", stream]),
        };
        if !available.contains(stream) {
            let list = available.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
            let hint = diag::nearest(stream, available.iter().map(String::as_str))
                .map(|n| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            return Err(doc.error(here(None), format!("[pipelines.{name}.streams.{stream}]: source `{}` has no stream `{stream}`; {hint}(its streams: {list})", pc.source.kind)));
        }
        let sync_mode = sc.sync_mode.unwrap_or_default();
        let delete_mode = sc.delete.unwrap_or_default();
        if sc.primary_key.as_ref().is_some_and(|k| k.is_empty() || k.iter().any(String::is_empty)) {
            return Err(doc.error(
                here(Some("primary_key")),
                format!("`primary_key` in [pipelines.{name}.streams.{stream}] must list at least one non-empty column"),
            ));
        }
        let mapping = sc.mapping.clone().filter(|m| !m.is_identity());
        let opts = StreamOptions {
            mapping: mapping.map(|m| Arc::new(m) as Arc<dyn dovetail_core::Transform>),
            sync_mode,
            delete_mode,
            primary_key: sc.primary_key.clone(),
            on_unavailable: sc.on_unavailable.unwrap_or_default(),
            allow_all_dead_lettered: !sc.fail_when_all_dead_lettered.unwrap_or(true),
        };
        streams.insert(stream.clone(), opts);
    }
    Ok(PipelineSpec {
        name: name.to_owned(),
        source,
        sink,
        streams,
        batch_size: pc.batch_size,
        max_dead_letters: pc.max_dead_letters,
        max_dead_letter_ratio: pc.max_dead_letter_ratio,
        outbox_max: pc.outbox_max,
        alerts: pc.alerts.clone(),
        drift: pc.drift,
        explain: Default::default(),
        retention: None,
        schedule,
        parents: stream_parents(root, name),
    })
}

/// Where each key of a connector's table is written, so the connector can name the line.
fn places(doc: &Doc, table: &Spanned<DeTable<'_>>) -> BTreeMap<String, String> {
    table.get_ref().iter().map(|(k, _)| (k.get_ref().to_string(), doc.at(k.span().start))).collect()
}

/// `parent = { stream = "…" }` of each `[[pipelines.NAME.source.streams]]` entry (REST).
fn stream_parents(root: &DeTable<'_>, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some((_, streams)) = lookup(root, &["pipelines", name, "source", "streams"]) else { return out };
    let DeValue::Array(items) = streams.get_ref() else { return out };
    for item in items.iter() {
        let Some(t) = item.get_ref().as_table() else { continue };
        let child = t.get("name").and_then(|v| v.get_ref().as_str());
        let parent = t
            .get("parent")
            .and_then(|p| p.get_ref().as_table())
            .and_then(|p| p.get("stream"))
            .and_then(|v| v.get_ref().as_str());
        if let (Some(c), Some(p)) = (child, parent) {
            out.insert(c.to_owned(), p.to_owned());
        }
    }
    out
}
