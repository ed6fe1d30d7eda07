//! The config file: typed structs (their `///` docs become `dovetail config-schema`) and
//! loading — parse once with spans, interpolate, deserialize, build connectors from the
//! registry, and validate — so every error names the file, the line and the nearest key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dovetail_core::mapping::Mapping;
use dovetail_core::{DeleteMode, Error, SyncMode};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use crate::build::PipelineSpec;
use crate::build::build_pipeline;
use crate::diag::{self, Doc, offset_of};
use crate::interpolate::{self, LiteralSecret, Lookup, ProcessEnv};
use crate::own_files::{OwnFiles, StateStorage};
use crate::registry;

/// A dovetail config file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where dovetail keeps checkpoints, the idempotency ledger, dead letters and run history.
    #[serde(default)]
    pub state: StateConfig,
    /// Pipelines by name; the name keys their state, so renaming one starts it afresh.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// `dovetail worker` fleets (PostgreSQL state): lease and heartbeat.
    pub workers: Option<WorkersConfig>,
}

/// `[workers]`: how long a worker's claim on a stream lasts without a heartbeat.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// How long a stream lease lasts without renewal (default `30s`): a worker that died is
    /// taken over after this. At least one second.
    pub lease: Option<String>,
    /// How often a worker renews its leases (default `10s`); less than half of `lease`.
    pub heartbeat: Option<String>,
}

/// `[state]`: the state store.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// SQLite file, as a path or `sqlite://path` (relative to the config file's folder), or
    /// PostgreSQL as `postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=…]`
    /// (put the password in `${ENV}` or `${file:…}`). Default: `.dovetail/state.db` next to
    /// the config file. No sink may write to it, its companion files, its run locks or
    /// `tokens.json`.
    pub url: Option<String>,
    /// PostgreSQL state only: the schema holding dovetail's tables (default `dovetail`;
    /// created when missing).
    pub schema: Option<String>,
    /// Key that seals the token store (`tokens.json` next to the state file, where rotated
    /// OAuth2 refresh tokens are kept): 32 bytes as 64 hex digits or base64, from
    /// `${ENV}` or `${file:...}`. Default: `DOVETAIL_SECRET_KEY`; without either the file
    /// is owner-only but not encrypted.
    pub secret_key: Option<dovetail_core::Secret>,
    /// HTTP responses kept for conditional requests and stale serving (default 10000).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 10_000_000>")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub http_cache_entries: Option<usize>,
    /// What runs keep for `dovetail explain`: `metadata` (default: request and outcome),
    /// `full` (also each written record's raw data, for the Raw and Output diff sections;
    /// costs more on big loads) or `off`. See docs/explain.md.
    pub explain: Option<dovetail_core::explain::ExplainCapture>,
    /// How long run history, explain stories and accepted drift events are kept.
    pub retention: Option<crate::retention::RetentionConfig>,
}

/// `[pipelines.NAME]`: one source, one sink, per-stream settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Records per page and per sink transaction (default 1000).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 100_000>")]
    #[schemars(range(min = 1, max = 100_000))]
    pub batch_size: Option<usize>,
    /// Fail the run once more than this many records were dead-lettered in it.
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 0, 1_000_000_000>")]
    #[schemars(range(min = 0, max = 1_000_000_000))]
    pub max_dead_letters: Option<u64>,
    /// Fail the run once dead letters exceed this share (0.0–1.0) of the records read.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_dead_letter_ratio: Option<f64>,
    /// Records a stream may queue in the outbox while its sink is down (default 100000).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 100_000_000>")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub outbox_max: Option<u64>,
    /// What a record that drifted from its stream's baseline gets, per change class:
    /// `warn` (default), `quarantine` or `pause` (docs/drift.md).
    #[serde(default)]
    pub drift: dovetail_core::DriftPolicy,
    /// Where records come from: `kind` picks the connector, the other keys are its config.
    pub source: SourceRef,
    /// Where records go: `kind` picks the connector, the other keys are its config.
    pub sink: SinkRef,
    /// Per-stream settings by stream name (streams not listed run with defaults).
    #[serde(default)]
    pub streams: BTreeMap<String, StreamSettings>,
    /// Alerts after a run: a webhook and/or a command, and the conditions that fire them.
    pub alerts: Option<crate::alerts::AlertsConfig>,
    /// When `dovetail worker` runs this pipeline: a cron pattern (`*/15 * * * *`), in
    /// `timezone`. Workers run only pipelines with `schedule` or `every`; `dovetail run
    /// --every` ignores both.
    pub schedule: Option<String>,
    /// The IANA time zone of `schedule` (default `UTC`).
    pub timezone: Option<String>,
    /// When `dovetail worker` runs this pipeline: every DURATION (`15m`, `2s`), instead of
    /// `schedule`.
    pub every: Option<String>,
}

/// `[pipelines.NAME.streams.STREAM]`: how one stream is synced and mapped.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// `incremental` (default: what is new since the last run) or `full_refresh` (everything, every run).
    pub sync_mode: Option<SyncMode>,
    /// What a completed full refresh does with sink rows gone from the source: `keep` (default),
    /// `delete` or `soft_delete`. Only valid with `sync_mode = "full_refresh"`.
    pub delete: Option<DeleteMode>,
    /// Output primary-key columns, overriding what dovetail derives through the mapping.
    pub primary_key: Option<Vec<String>>,
    /// Declarative mapping applied to every record of the stream.
    pub mapping: Option<Mapping>,
    /// When the source or sink stays down past the retry budget: `fail` (default: the run
    /// fails with the cause), `pause` (the stream stops at its checkpoint, is marked paused,
    /// and the next run probes), or `use_cache` (serve the last good responses, marked stale).
    /// Records for a down sink wait in the outbox either way.
    pub on_unavailable: Option<dovetail_core::OnUnavailable>,
    /// Fail the stream (exit 9) when every one of at least 10 records it read was
    /// dead-lettered (default `true`); `false` lets such a run succeed.
    pub fail_when_all_dead_lettered: Option<bool>,
}

/// The `kind` of a source table; the rest of the table is the connector's own config.
#[derive(Debug, Deserialize)]
pub struct SourceRef {
    /// Connector kind.
    pub kind: String,
}

/// The `kind` of a sink table; the rest of the table is the connector's own config.
#[derive(Debug, Deserialize)]
pub struct SinkRef {
    /// Connector kind.
    pub kind: String,
}

impl JsonSchema for SourceRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Source".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one_of: Vec<_> = registry::sources().iter().map(|e| (e.schema)(generator).to_value()).collect();
        json_schema!({ "description": "A source connector; `kind` selects it.", "oneOf": one_of })
    }
}

impl JsonSchema for SinkRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Sink".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one_of: Vec<_> = registry::sinks().iter().map(|e| (e.schema)(generator).to_value()).collect();
        json_schema!({ "description": "A sink connector; `kind` selects it.", "oneOf": one_of })
    }
}

/// The JSON Schema of the whole config file.
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(Config).to_value()
}

/// A loaded, validated config with its connectors built.
pub struct Project {
    /// The config document.
    pub doc: Doc,
    /// The SQLite state file.
    pub state_path: PathBuf,
    /// Pipelines, by name order.
    pub pipelines: Vec<PipelineSpec>,
    /// Secret-looking keys given as literals (`dovetail check` warns about them).
    pub literal_secrets: Vec<LiteralSecret>,
    /// `[workers]`, validated.
    pub workers: crate::commands::worker::Timing,
}

impl Project {
    /// A pipeline by name, or a Config error with the nearest name.
    pub fn pipeline(&self, name: &str) -> Result<&PipelineSpec, Error> {
        self.pipelines
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| unknown_pipeline(&self.doc, name, self.pipelines.iter().map(|p| p.name.clone()).collect()))
    }
}

/// The config error for a pipeline name that is not in the config.
pub fn unknown_pipeline(doc: &Doc, name: &str, known: Vec<String>) -> Error {
    let list = if known.is_empty() {
        "it has none".to_owned()
    } else {
        format!("it has {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
    };
    match diag::nearest(name, known.iter().map(String::as_str)) {
        Some(n) => doc.error_nowhere(format!("no pipeline `{name}`; did you mean `{n}`? ({list})")),
        None => doc.error_nowhere(format!("no pipeline `{name}` ({list})")),
    }
}

/// Read a config file into a [`Doc`].
pub fn read_doc(path: &Path) -> Result<Doc, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let missing = e.kind() == std::io::ErrorKind::NotFound;
        let err = Error::config(format!("cannot read config file `{}`", path.display())).with_source(e);
        // No config yet is where everyone starts: say how to get one.
        if missing {
            let flag = if path == Path::new("dovetail.toml") { String::new() } else { format!(" --config {}", path.display()) };
            err.with_hint(format!(
                "`dovetail init{flag}` writes a commented starter config there (or pass `--config PATH` to use another file)"
            ))
        } else {
            err
        }
    })?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(Doc { label: path.display().to_string(), text, base_dir })
}

fn parse(doc: &Doc) -> Result<Spanned<DeTable<'_>>, Error> {
    DeTable::parse(&doc.text).map_err(|e| match e.span() {
        Some(span) => doc.error(span.start, format!("invalid TOML: {}", e.message().trim_end())),
        None => doc.error_nowhere(format!("invalid TOML: {}", e.message().trim_end())),
    })
}

/// Just enough of a config for the verbs that only read state: the state file and pipeline names.
pub struct StateOnly {
    /// The config document.
    pub doc: Doc,
    /// The SQLite state file.
    pub state_path: PathBuf,
    /// Pipeline names in the config.
    pub pipelines: Vec<String>,
}

#[derive(Deserialize)]
struct Light {
    #[serde(default)]
    state: StateConfig,
    #[serde(default)]
    pipelines: BTreeMap<String, serde::de::IgnoredAny>,
}

/// Load only `[state]` and the pipeline names; the rest of the file is not validated (so
/// `status` and `dead-letters list` work while a connector's config is broken).
pub fn load_state_only(path: &Path) -> Result<StateOnly, Error> {
    let doc = read_doc(path)?;
    let mut root = parse(&doc)?;
    if let Some(DeValue::Table(t)) = root.get_mut().get_mut("state").map(Spanned::get_mut) {
        interpolate::interpolate(&doc, t, &ProcessEnv)?;
    }
    let light = Light::deserialize(toml::de::Deserializer::from(root.clone()))
        .map_err(|e| diag::toml_error(&doc, root.get_ref(), &e))?;
    let state_path = state_path(&doc, root.get_ref(), &light.state)?;
    Ok(StateOnly { state_path, pipelines: light.pipelines.into_keys().collect(), doc })
}

/// Load, interpolate, validate a config file and build its connectors (no IO beyond
/// reading the file and `${file:...}` references).
pub fn load(path: &Path) -> Result<Project, Error> {
    load_with(path, &ProcessEnv)
}

/// [`load`] for the verbs that only read state (`explain`, `state show`): an unset
/// environment variable reads as a placeholder, so the pipelines' secrets are not needed to
/// read what their runs stored. Nothing built this way may contact anything.
pub fn load_read_only(path: &Path) -> Result<Project, Error> {
    load_with(path, &UnsetIsPlaceholder)
}

/// The process environment, with a placeholder for an unset variable.
struct UnsetIsPlaceholder;

impl Lookup for UnsetIsPlaceholder {
    fn env(&self, name: &str) -> Option<String> {
        Some(std::env::var(name).unwrap_or_else(|_| format!("unset-{name}")))
    }
}

/// [`load`] with environment variables taken from `env`.
pub fn load_with(path: &Path, env: &dyn Lookup) -> Result<Project, Error> {
    let doc = read_doc(path)?;
    let (state_path, pipelines, literal_secrets, workers) = load_doc(&doc, env)?;
    Ok(Project { doc, state_path, pipelines, literal_secrets, workers })
}

/// A config loaded pipeline by pipeline, for `dovetail check`: the pipelines that load, and
/// the error of each one that does not (every pipeline's, not only the first).
pub struct Checked {
    /// The pipelines that loaded (with the config's `[state]`).
    pub project: Project,
    /// Pipelines that did not load, by name, with their error.
    pub failed: Vec<(String, Error)>,
}

/// Load like [`load`], one pipeline at a time so a broken pipeline does not hide the errors of
/// the next. `Err` for what every pipeline shares: the file, its TOML, `[state]`.
pub fn load_each(path: &Path) -> Result<Checked, Error> {
    let doc = read_doc(path)?;
    let root = parse(&doc)?;
    let names: Vec<String> = match root.get_ref().get("pipelines").map(Spanned::get_ref) {
        Some(DeValue::Table(t)) => t.keys().map(|k| k.get_ref().to_string()).collect(),
        // Not a table: the whole load says so.
        _ => return load_with(path, &ProcessEnv).map(|project| Checked { project, failed: vec![] }),
    };
    // The state (and every key outside the pipelines) first, with no pipeline at all.
    let only = |keep: Option<&str>| {
        let mut r = root.clone();
        if let Some(DeValue::Table(t)) = r.get_mut().get_mut("pipelines").map(Spanned::get_mut) {
            *t = std::mem::take(t).into_iter().filter(|(k, _)| Some(k.get_ref().as_ref()) == keep).collect();
        }
        r
    };
    let (state_path, _, mut literal_secrets, workers) = load_root(&doc, only(None), &ProcessEnv)?;
    let (mut pipelines, mut failed) = (Vec::new(), Vec::new());
    for name in names {
        match load_root(&doc, only(Some(&name)), &ProcessEnv) {
            Ok((_, specs, secrets, _)) => {
                pipelines.extend(specs);
                for s in secrets {
                    if !literal_secrets.contains(&s) {
                        literal_secrets.push(s);
                    }
                }
            }
            Err(e) => failed.push((name, e)),
        }
    }
    literal_secrets.sort_by_key(|s| s.line);
    Ok(Checked { project: Project { doc, state_path, pipelines, literal_secrets, workers }, failed })
}

/// What a config file loads to: the state path, pipelines, literal secrets, `[workers]`.
pub(crate) type Loaded = (PathBuf, Vec<PipelineSpec>, Vec<LiteralSecret>, crate::commands::worker::Timing);

pub(crate) fn load_doc(doc: &Doc, env: &dyn Lookup) -> Result<Loaded, Error> {
    load_root(doc, parse(doc)?, env)
}

fn load_root(doc: &Doc, mut root: Spanned<DeTable<'_>>, env: &dyn Lookup) -> Result<Loaded, Error> {
    let secrets = interpolate::interpolate(doc, root.get_mut(), env)?;
    let config = Config::deserialize(toml::de::Deserializer::from(root.clone()))
        .map_err(|e| diag::toml_error(doc, root.get_ref(), &e))?;
    let root = root.get_ref();
    let state_path = state_path(doc, root, &config.state)?;
    let workers = crate::commands::worker::Timing::from_config(doc, root, config.workers.as_ref())?;
    let cache_entries = config.state.http_cache_entries.unwrap_or(dovetail_state::DEFAULT_CACHE_ENTRIES);
    let local = crate::stores::local_dir(doc, &state_path);
    let stores = crate::stores::for_state(&state_path, &local, config.state.secret_key.clone(), cache_entries);
    let storage = match crate::stores::postgres_at(&state_path) {
        Some(pg) => StateStorage::Postgres {
            database: pg.target().database_id().to_owned(),
            schema: pg.target().schema().to_owned(),
        },
        None => StateStorage::Sqlite(state_path.clone()),
    };
    if matches!(storage, StateStorage::Postgres { .. }) && config.state.secret_key.is_none() {
        tokens_need_a_key(doc, root, &config, env)?;
    }
    let own = OwnFiles::new(&storage, config.state.url.is_none());
    let mut pipelines = Vec::new();
    let retention = crate::retention::resolve(doc, root, config.state.retention.as_ref())?;
    for (name, pc) in &config.pipelines {
        let mut spec = build_pipeline(doc, root, name, pc, &stores, &own)?;
        (spec.explain, spec.retention) = (config.state.explain.unwrap_or_default(), retention.clone());
        pipelines.push(spec);
    }
    Ok((state_path, pipelines, secrets, workers))
}

/// PostgreSQL state keeps rotated OAuth2 refresh tokens in the shared database, always
/// sealed: a pipeline that would store one is refused when the config is read, naming its
/// line, when no key is set — not at its first token, mid-run.
fn tokens_need_a_key(doc: &Doc, root: &DeTable<'_>, config: &Config, env: &dyn Lookup) -> Result<(), Error> {
    if env.env(dovetail_state::SECRET_KEY_ENV).is_some_and(|k| !k.trim().is_empty()) {
        return Ok(());
    }
    for name in config.pipelines.keys() {
        for side in ["source", "sink"] {
            let path = ["pipelines", name.as_str(), side, "auth", "type"];
            let Some((_, v)) = diag::lookup(root, &path) else { continue };
            if v.get_ref().as_str() == Some("oauth2_refresh_token") {
                return Err(doc.error(
                    offset_of(root, &path),
                    format!(
                        "pipeline `{name}`'s {side} uses `oauth2_refresh_token`, whose rotated refresh tokens \
                         PostgreSQL state keeps in the shared database, always sealed: set {} or `[state] secret_key` \
                         (32 bytes as 64 hex digits or base64)",
                        dovetail_state::SECRET_KEY_ENV
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Where the state lives: the SQLite file, or for PostgreSQL the label of its target
/// (registered with [`crate::stores::register_postgres`]; it names no local file).
fn state_path(doc: &Doc, root: &DeTable<'_>, state: &StateConfig) -> Result<PathBuf, Error> {
    let at = offset_of(root, &["state", "url"]);
    if state.schema.is_some() && !state.url.as_deref().is_some_and(is_postgres) {
        return Err(doc.error(offset_of(root, &["state", "schema"]), "`state.schema` applies to PostgreSQL state only"));
    }
    let raw = match state.url.as_deref() {
        None => return Ok(doc.base_dir.join(".dovetail").join("state.db")),
        Some(u) => u.trim(),
    };
    let path = if let Some(rest) = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:")) {
        rest
    } else if is_postgres(raw) {
        let target = dovetail_state_pg::PgTarget::parse(raw, state.schema.as_deref())
            .map_err(|e| doc.error(at, e.message().to_owned()))?;
        return crate::stores::register_postgres(target);
    } else if let Some((scheme, _)) = raw.split_once("://") {
        return Err(doc.error(
            at,
            format!("unsupported state URL scheme `{scheme}` (`state.url`); use a path or `sqlite://path`"),
        ));
    } else {
        raw
    };
    if path.is_empty() {
        return Err(doc.error(at, "`state.url` names no file"));
    }
    // SQLite would open `:memory:` as a private database, but the runner opens the state more
    // than once per command (and every command again): checkpoints and the ledger would vanish
    // between them, so a rerun would fetch and deliver everything again.
    if path == ":memory:" || path.starts_with("file::memory:") {
        return Err(doc.error(
            at,
            "`state.url` cannot be `:memory:`: checkpoints and the ledger must outlive the run; name a file (e.g. `.dovetail/state.db`)",
        ));
    }
    Ok(doc.base_dir.join(path))
}

fn is_postgres(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "config_range_tests.rs"]
mod range_tests;
