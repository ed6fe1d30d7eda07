//! The connector registry: an explicit list, one line per connector.
//!
//! Adding a connector is one line in [`sources`] or [`sinks`] plus one dependency line in
//! this crate's Cargo.toml (`cargo xtask new-connector` does both).

use std::sync::Arc;

use dovetail_core::{BuildCx, Sink, SinkConnector, Source, SourceConnector};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

/// Every source the `dovetail` binary knows, one line each.
#[rustfmt::skip]
pub fn sources() -> Vec<SourceEntry> {
    vec![
        source::<dovetail_files::FilesSource>(),
        source::<dovetail_rest::RestSource>(),
        source::<dovetail_github::GithubSource>(),
        source::<dovetail_postgres::PostgresSource>(),
        source::<dovetail_stripe::StripeSource>(),
        source::<dovetail_hubspot::HubspotSource>(),
    ]
}

/// Every sink the `dovetail` binary knows, one line each.
#[rustfmt::skip]
pub fn sinks() -> Vec<SinkEntry> {
    vec![
        sink::<dovetail_sqlite::SqliteSink>(),
        sink::<dovetail_files::JsonlSink>(),
        sink::<dovetail_rest::RestSink>(),
        sink::<dovetail_postgres::PostgresSink>(),
        sink::<dovetail_stripe::StripeSink>(),
        sink::<dovetail_hubspot::HubspotSink>(),
    ]
}

/// Why a connector could not be built from its table.
#[derive(Debug)]
pub enum BuildError {
    /// The table does not fit the connector's config type (the error has the span).
    Toml(toml::de::Error),
    /// The connector refused the config.
    Build(dovetail_core::Error),
}

/// Builds a connector from its config table (with `kind` removed).
pub type BuildFn<T> = for<'a> fn(Spanned<DeTable<'a>>, &BuildCx) -> Result<Arc<T>, BuildError>;

/// A registered source.
#[derive(Clone, Copy)]
pub struct SourceEntry {
    /// The `kind` selecting it.
    pub kind: &'static str,
    /// Its config schema, `kind` included.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// Build it from config.
    pub build: BuildFn<dyn Source>,
}

/// A registered sink.
#[derive(Clone, Copy)]
pub struct SinkEntry {
    /// The `kind` selecting it.
    pub kind: &'static str,
    /// Its config schema, `kind` included.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// Build it from config.
    pub build: BuildFn<dyn Sink>,
}

/// The registry entry of a source connector.
pub fn source<C: SourceConnector>() -> SourceEntry {
    SourceEntry { kind: C::KIND, schema: source_schema_of::<C>, build: build_source::<C> }
}

/// The registry entry of a sink connector.
pub fn sink<C: SinkConnector>() -> SinkEntry {
    SinkEntry { kind: C::KIND, schema: sink_schema_of::<C>, build: build_sink::<C> }
}

fn build_source<C: SourceConnector>(table: Spanned<DeTable<'_>>, cx: &BuildCx) -> Result<Arc<dyn Source>, BuildError> {
    let config = C::Config::deserialize(toml::de::Deserializer::from(table)).map_err(BuildError::Toml)?;
    Ok(Arc::new(C::build(config, cx).map_err(BuildError::Build)?))
}

fn build_sink<C: SinkConnector>(table: Spanned<DeTable<'_>>, cx: &BuildCx) -> Result<Arc<dyn Sink>, BuildError> {
    let config = C::Config::deserialize(toml::de::Deserializer::from(table)).map_err(BuildError::Toml)?;
    Ok(Arc::new(C::build(config, cx).map_err(BuildError::Build)?))
}

fn source_schema_of<C: SourceConnector>(generator: &mut SchemaGenerator) -> Schema {
    with_kind(C::Config::json_schema(generator), C::KIND)
}

fn sink_schema_of<C: SinkConnector>(generator: &mut SchemaGenerator) -> Schema {
    with_kind(C::Config::json_schema(generator), C::KIND)
}

/// The connector's inline config schema with a required `kind` constant added.
pub fn with_kind(mut schema: Schema, kind: &str) -> Schema {
    let obj = schema.ensure_object();
    obj.insert("title".into(), serde_json::Value::String(kind.to_owned()));
    let props = obj.entry("properties").or_insert_with(|| serde_json::json!({}));
    if let Some(props) = props.as_object_mut() {
        props.insert(
            "kind".into(),
            serde_json::json!({ "description": "Connector kind.", "const": kind, "type": "string" }),
        );
    }
    let req = obj.entry("required").or_insert_with(|| serde_json::json!([]));
    if let Some(req) = req.as_array_mut() {
        req.insert(0, serde_json::Value::String("kind".into()));
    }
    schema
}
