//! The source's config, as written in `dovetail.toml`.

use std::collections::BTreeMap;

use dovetail_core::Secret;
use dovetail_http::HttpConfig;
use schemars::JsonSchema;
use serde::Deserialize;

/// HubSpot's API host; also where OAuth2 tokens are minted (`/oauth/v1/token`).
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// Records per list page: HubSpot's maximum.
pub const PAGE_SIZE: u32 = 100;

/// The date-based API version the connector is tested against (`api_version` overrides it).
pub const API_VERSION: &str = "2026-09";

pub(crate) fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

pub(crate) fn default_api_version() -> String {
    API_VERSION.to_owned()
}

fn default_search_rate() -> u32 {
    crate::source::SEARCHES_PER_SECOND
}

/// The HubSpot source: CRM objects read from one account (portal).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubspotConfig {
    /// API base URL (default `https://api.hubapi.com`); credentials go to this origin only.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// A private-app access token (from `${ENV}` or `${file:...}`); or give `oauth`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A public app's OAuth2 credentials, refreshed at `{base_url}/oauth/v1/token`.
    #[serde(default)]
    pub oauth: Option<HubspotOAuth>,
    /// The date-based API version in every path, e.g. `2026-09` (the default).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The objects to read, one stream each: `contacts`, `companies`, `deals`, `tickets`,
    /// `line_items`, a custom object's name (e.g. `p_cars` or `2-1234567`), or `owners`.
    pub objects: Vec<String>,
    /// Properties to read per object (e.g. `contacts = ["email", "firstname"]`); every
    /// property the properties API lists when an object is not named here.
    #[serde(default)]
    pub properties: BTreeMap<String, Vec<String>>,
    /// Associations to read, one stream each, as `from:to` object types: `contacts:companies`
    /// is the stream `contacts_to_companies` (`from_id`, `to_id`, `type_id`, `category`,
    /// `label`). Read whole each run: pair with `sync_mode = "full_refresh"` to delete removed ones.
    #[serde(default)]
    pub associations: Vec<String>,
    /// Search requests per second across the source's streams (1 to 100; default 5,
    /// HubSpot's limit per account): searches carry no rate-limit headers to pace them by.
    #[serde(default = "default_search_rate", deserialize_with = "dovetail_http::in_range_req::<_, _, 1, 100>")]
    #[schemars(range(min = 1, max = 100))]
    pub search_rate: u32,
    /// Timeouts, retries, rate limit, circuit breaker, proxy, CA certificates, headers.
    #[serde(default)]
    pub http: HttpConfig,
}

/// A HubSpot public app's OAuth2 refresh-token grant.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubspotOAuth {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// The refresh token obtained when the account installed the app.
    pub refresh_token: Secret,
}
