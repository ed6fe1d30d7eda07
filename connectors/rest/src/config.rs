//! The REST connector's config, as written in `dovetail.toml` (every key is documented in
//! docs/connectors/rest.md).

use std::collections::BTreeMap;

use dovetail_http::HttpConfig;
use dovetail_http::auth::AuthConfig;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// The REST source: one API, any number of streams.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestSourceConfig {
    /// Base URL that stream paths are joined to, e.g. `https://api.example.com`.
    #[serde(deserialize_with = "dovetail_http::http_url")]
    pub base_url: String,
    /// Credentials (secrets from `${ENV}` or `${file:...}`).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// API version pinned and sent on every request.
    #[serde(default)]
    pub api_version: Option<ApiVersion>,
    /// Timeouts, retries, rate limit, circuit breaker, proxy, CA certificates, headers.
    #[serde(default)]
    pub http: HttpConfig,
    /// The streams this API exposes.
    pub streams: Vec<RestStreamConfig>,
}

/// A pinned API version: the header and the value sent on every request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiVersion {
    /// Header name, e.g. `X-Api-Version`.
    pub header: String,
    /// Version, e.g. `2026-01-01`.
    pub value: String,
}

/// One stream of the REST source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestStreamConfig {
    /// Stream name (the table name in a database sink).
    pub name: String,
    /// Path relative to `base_url`, e.g. `/v1/items`; a child stream names parent fields as
    /// `{parent.FIELD}`, e.g. `/v1/items/{parent.id}/comments` (each value one path segment),
    /// or takes its whole URL from one parent field, `path = "{parent.links.comments}"`
    /// (absolute or relative to `base_url`). An absolute URL, configured or from a parent,
    /// must be on `base_url`'s origin or in `http.allowed_origins`.
    pub path: String,
    /// Query parameters sent on every request of the stream (page size, filters); numbers
    /// and booleans are sent as written (`per_page = 100`).
    #[serde(default, deserialize_with = "scalar_strings")]
    #[schemars(schema_with = "scalar_strings_schema")]
    pub query: BTreeMap<String, String>,
    /// JSON pointer to the array of records in each response (e.g. `/data`); omit when the
    /// body itself is the array.
    #[serde(default)]
    pub records: Option<String>,
    /// Primary-key fields (dotted paths into each record).
    pub primary_key: Vec<String>,
    /// How the next page is found (default: no pagination).
    #[serde(default, deserialize_with = "pagination")]
    pub pagination: Pagination,
    /// Incremental sync by a cursor field.
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// JSON Schema of the records; without one it is inferred from the first page.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Value>>")]
    pub schema: Option<Value>,
    /// Makes this a child stream: one listing per record of the parent stream.
    #[serde(default)]
    pub parent: Option<ParentConfig>,
    /// Keep each page's ETag / Last-Modified in the response cache and send
    /// `If-None-Match` / `If-Modified-Since` next time (a 304 is answered from the cache).
    /// Worth it for small listings read often; for big listings read once per run storing
    /// every page costs more than it saves. Default off (`on_unavailable = "use_cache"`
    /// caches regardless, since it serves those pages when the API is down).
    #[serde(default)]
    pub conditional_requests: bool,
}

/// A child stream's parent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParentConfig {
    /// Name of the parent stream (defined in the same source).
    pub stream: String,
    /// Fields copied from the parent record into each child record: child field → parent
    /// field, e.g. `{ item_id = "id" }`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// Incremental sync settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// The record field that only grows (an RFC 3339 timestamp or a number).
    pub cursor_field: String,
    /// Query parameter that receives the last cursor value (inclusive), e.g. `updated_since`;
    /// without it the whole listing is read and older records are filtered out.
    #[serde(default)]
    pub param: Option<String>,
    /// Value sent on the first run, before any cursor is known.
    #[serde(default)]
    pub initial: Option<String>,
    /// Re-read this many seconds before the last cursor (for APIs whose timestamps lag);
    /// the ledger skips what was already written.
    #[serde(default, deserialize_with = "dovetail_http::in_range_req::<_, _, 0, 31_536_000>")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub lookback_secs: u64,
}

/// How the next page of a listing is found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request per listing.
    #[default]
    None,
    /// A cursor in the body sent back as a query parameter.
    Cursor {
        /// JSON pointer of the cursor, e.g. `/meta/next_cursor`; missing, null or "" ends.
        pointer: String,
        /// Query parameter that carries it.
        param: String,
    },
    /// A POST listing: `body` sent as JSON, and a cursor in the response sent back as the
    /// body's `field` (HubSpot's search: `paging.next.after` → `after`).
    BodyCursor {
        /// JSON pointer of the cursor in the response, e.g. `/paging/next/after`; missing,
        /// null or "" ends.
        pointer: String,
        /// Top-level field of the request body that carries it, e.g. `after`.
        field: String,
        /// The JSON object POSTed for the first page (filters, sorts, page size); later pages
        /// send it with `field` set. Default `{}`.
        #[serde(default = "empty_object")]
        #[schemars(with = "BTreeMap<String, Value>")]
        body: Value,
    },
    /// The last record's id sent back as a query parameter while the body says more pages
    /// follow (Stripe: `starting_after`, `has_more`).
    LastId {
        /// Query parameter that carries the last id, e.g. `starting_after`.
        param: String,
        /// JSON pointer of the "more pages follow" flag, e.g. `/has_more`; anything but
        /// `true` ends the listing.
        has_more: String,
        /// JSON pointer of the id inside each record (default `/id`).
        #[serde(default = "slash_id")]
        id: String,
    },
    /// The next page's URL in the body.
    NextUrl {
        /// JSON pointer of the URL, e.g. `/next`; missing, null or "" ends.
        pointer: String,
    },
    /// The `Link` header's `rel="next"` URL (RFC 8288).
    LinkHeader,
    /// Page numbers: `param` = first, first + 1, ...
    PageNumber {
        /// Query parameter of the page number.
        param: String,
        /// Number of the first page (default 1).
        #[serde(default = "one", deserialize_with = "dovetail_http::in_range_req::<_, _, 0, 1_000_000>")]
        #[schemars(range(min = 0, max = 1_000_000))]
        first: u64,
        /// Page size: a shorter page is the last one (also used to step over a bad page).
        #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 100_000>")]
        #[schemars(range(min = 1, max = 100_000))]
        page_size: Option<u64>,
        /// JSON pointer of the total number of records, when the API sends it.
        #[serde(default)]
        total_pointer: Option<String>,
    },
    /// Offsets: `param` = records received so far.
    Offset {
        /// Query parameter of the offset.
        param: String,
        /// Page size: a shorter page is the last one, and a bad page is stepped over by it.
        #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 100_000>")]
        #[schemars(range(min = 1, max = 100_000))]
        page_size: Option<u64>,
        /// JSON pointer of the total number of records, when the API sends it.
        #[serde(default)]
        total_pointer: Option<String>,
    },
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn slash_id() -> String {
    "/id".to_owned()
}

fn one() -> u64 {
    1
}

/// The `type` names of [`Pagination`], for the error a bare string gets.
const PAGINATION_TYPES: [&str; 8] =
    ["none", "cursor", "body_cursor", "last_id", "next_url", "link_header", "page_number", "offset"];

/// [`Pagination`] from its table; a bare string (`pagination = "link_header"`) is refused
/// with the table to write instead of serde's words about internally tagged enums.
fn pagination<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Pagination, D::Error> {
    struct Table;
    impl<'de> serde::de::Visitor<'de> for Table {
        type Value = Pagination;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a table such as `{ type = \"link_header\" }`")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Pagination, E> {
            let fields = match v {
                "cursor" => ", pointer = \"/meta/next_cursor\", param = \"cursor\"",
                "body_cursor" => ", pointer = \"/paging/next/after\", field = \"after\", body = { limit = 100 }",
                "last_id" => ", param = \"starting_after\", has_more = \"/has_more\", id = \"/id\"",
                "next_url" => ", pointer = \"/next\"",
                "page_number" | "offset" => ", param = \"page\"",
                _ => "",
            };
            if PAGINATION_TYPES.contains(&v) {
                Err(E::custom(format!("`pagination` is a table: write `pagination = {{ type = \"{v}\"{fields} }}`")))
            } else {
                Err(E::custom(format!(
                    "`pagination` is a table with a `type`, one of {}: e.g. `pagination = {{ type = \"link_header\" }}`",
                    PAGINATION_TYPES.map(|t| format!("`{t}`")).join(", ")
                )))
            }
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Pagination, A::Error> {
            Pagination::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Table)
}

/// A table of strings where numbers and booleans are taken as the text they are written as
/// (`per_page = 100` is `"100"`): query parameters are text on the wire either way.
fn scalar_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "expected a string, a number or a boolean (a query value is sent as text)")]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let map = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

fn scalar_strings_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": ["string", "integer", "number", "boolean"] }
    })
}

/// The REST sink: writes each stream's mapped records to an endpoint.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestSinkConfig {
    /// Base URL that stream paths are joined to.
    #[serde(deserialize_with = "dovetail_http::http_url")]
    pub base_url: String,
    /// Credentials.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// API version pinned and sent on every request.
    #[serde(default)]
    pub api_version: Option<ApiVersion>,
    /// Timeouts, retries, rate limit, circuit breaker, proxy, CA certificates, headers.
    #[serde(default)]
    pub http: HttpConfig,
    /// What `dovetail check` sends `GET` to, after fetching a token when `auth` has one:
    /// a path joined to `base_url` or an absolute http(s) URL on its origin (default:
    /// `base_url` itself). 401/403 fail the check as an auth error.
    #[serde(default)]
    pub check_path: Option<String>,
    /// Header that carries the idempotency key of a create (default `Idempotency-Key`).
    #[serde(default = "default_idempotency_header")]
    pub idempotency_header: String,
    /// Where each stream goes, by stream name.
    pub streams: BTreeMap<String, RestSinkStream>,
}

fn default_idempotency_header() -> String {
    "Idempotency-Key".to_owned()
}

/// Where and how one stream is written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestSinkStream {
    /// `create`: POST with a deterministic idempotency key, the destination id read back
    /// into the ledger, later changes sent to `update_path`; `upsert`: PUT to a path built
    /// from the record's fields (idempotent by itself).
    pub mode: SinkMode,
    /// Path for creates (`create`) or the upsert path with `{field}` placeholders
    /// (`upsert`, e.g. `/v1/items/{id}`).
    pub path: String,
    /// Path for updates of an already created record, with `{dest_id}` (default
    /// `<path>/{dest_id}`).
    #[serde(default)]
    pub update_path: Option<String>,
    /// HTTP method of updates (default `PUT`).
    #[serde(default)]
    pub update_method: Option<String>,
    /// Body template: a JSON value whose strings `"{{field}}"` are replaced by the record's
    /// field (keeping its type) and `{{field}}` inside longer strings by its text; default:
    /// the mapped record itself.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, Value>>")]
    pub body: Option<Value>,
    /// How bodies are sent: `json` (default) or `form` (`application/x-www-form-urlencoded`
    /// with bracket nesting: `metadata[k]=v`, `items[0][price]=…`, `expand[]=…`, as Stripe
    /// reads it; not with `batch`).
    #[serde(default)]
    pub encoding: BodyEncoding,
    /// JSON pointer of the destination id in a create's response (default `/id`).
    #[serde(default = "default_id_pointer")]
    pub id_pointer: String,
    /// Send records in batches of this many as one JSON array (upsert mode only: the
    /// endpoint must accept an array); default one request per record.
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 10_000>")]
    #[schemars(range(min = 1, max = 10_000))]
    pub batch: Option<usize>,
    /// Requests in flight at once for per-record writes (default 4).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 256>")]
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: Option<usize>,
}

fn default_id_pointer() -> String {
    "/id".to_owned()
}

/// How a REST sink encodes request bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`, nested with brackets (dovetail-http's form encoder).
    Form,
}

/// How a REST sink makes writes idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkMode {
    /// POST with an idempotency key; updates go to the id the destination returned.
    Create,
    /// PUT to a path built from the record (or the batch endpoint).
    Upsert,
}
