//! [`StripeConfig`]: the `[pipelines.NAME.source]` block of `kind = "stripe"`.

use std::collections::BTreeMap;

use dovetail_core::Secret;
use dovetail_http::HttpConfig;
use schemars::JsonSchema;
use serde::Deserialize;

/// Stripe's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";
/// The pinned API version, sent as `Stripe-Version` on every request.
pub const DEFAULT_STRIPE_VERSION: &str = "2025-03-31.basil";

/// Config of the Stripe source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Secret key (`sk_live_…`, `sk_test_…`) or restricted key (`rk_live_…`, `rk_test_…`)
    /// with read access to the streams: write `${STRIPE_API_KEY}` or `${file:/path}`.
    pub api_key: Secret,
    /// API root (default `https://api.stripe.com`); a proxy or test double may stand in.
    /// The key is sent to this origin only (and `http.allowed_origins`).
    #[serde(default = "default_base_url", deserialize_with = "dovetail_http::http_url")]
    pub base_url: String,
    /// Streams to read, by name (`customers`, `charges`, …). Empty (default): all of them.
    #[serde(default)]
    pub streams: Vec<String>,
    /// Pinned API version, sent as `Stripe-Version` on every request and recorded in each
    /// record's provenance and the run report.
    #[serde(default = "default_stripe_version")]
    pub stripe_version: String,
    /// Stripe Connect: read these connected accounts (`["acct_…"]`) or every account the
    /// platform has connected (`"all"`), each with its `Stripe-Account` header; every row
    /// then carries its account in `stripe_account`. Absent: the key's own account.
    pub accounts: Option<Accounts>,
    /// RFC 3339 timestamp: the first run reads only objects created from then on.
    pub start_date: Option<String>,
    /// Fields to expand in each stream's listing, by stream (`expand = { charges =
    /// ["balance_transaction"] }`, sent as `expand[]=data.balance_transaction`); only the
    /// fields the stream table lists as expandable are accepted.
    #[serde(default)]
    pub expand: BTreeMap<String, Vec<String>>,
    /// Event types the `events` stream lists (`["customer.*", "charge.refunded"]`, sent as
    /// `types[]`). Empty (default): every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Read deletes too: after each pass of `customers`, `products`, `prices` and `invoices`,
    /// the pass's `customer.deleted` (…) events, and hand them to the engine as deletes
    /// (applied when the stream's `delete` is `delete` or `soft_delete`). Default `false`.
    #[serde(default)]
    pub deleted_events: bool,
    /// Read changes too: each pass of a stream whose objects change (`customers`, `charges`,
    /// `invoices`, …) reads the `*.updated` (…) events since the last pass and re-fetches each
    /// changed object at the pinned version. The stream then keeps its own floor (no engine
    /// cursor): a re-fetched object keeps its old `created`. Default `false`.
    #[serde(default)]
    pub change_events: bool,
    /// HTTP settings: timeouts, retries, proxy, CA certificates, and the client-side rate
    /// budget (`rate_limit`; default 100 requests/s with a live key, 25/s with a test key,
    /// Stripe's documented limits — it sends no rate-limit headers).
    #[serde(default)]
    pub http: HttpConfig,
}

impl StripeConfig {
    /// The key, API root, version and HTTP settings, which the sink shares.
    pub(crate) fn connection(&self) -> Connection<'_> {
        Connection {
            api_key: &self.api_key,
            base_url: &self.base_url,
            stripe_version: &self.stripe_version,
            http: &self.http,
        }
    }
}

/// What the source and the sink both configure to reach Stripe: the client is built from it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connection<'a> {
    pub(crate) api_key: &'a Secret,
    pub(crate) base_url: &'a str,
    pub(crate) stripe_version: &'a str,
    pub(crate) http: &'a HttpConfig,
}

/// Which connected accounts are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Accounts {
    /// `"all"`: every connected account (`GET /v1/accounts`).
    All(AllAccounts),
    /// These accounts, in this order.
    List(Vec<String>),
}

/// The word `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum AllAccounts {
    /// Every connected account.
    #[serde(rename = "all")]
    All,
}

/// Whether a key is for test or live mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `sk_test_` / `rk_test_`: test data, 25 requests/s.
    Test,
    /// `sk_live_` / `rk_live_`: live data, 100 requests/s.
    Live,
}

impl Mode {
    /// The mode of `key` by its prefix; `None` for anything that is not a Stripe secret or
    /// restricted key (a publishable `pk_` key included: it cannot read these lists).
    pub fn of_key(key: &str) -> Option<Mode> {
        match key.get(..8) {
            Some("sk_test_" | "rk_test_") => Some(Mode::Test),
            Some("sk_live_" | "rk_live_") => Some(Mode::Live),
            _ => None,
        }
    }

    /// `test` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    /// Stripe's documented request limit per second in this mode.
    pub fn requests_per_second(self) -> u32 {
        match self {
            Mode::Test => 25,
            Mode::Live => 100,
        }
    }
}

pub(crate) fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

pub(crate) fn default_stripe_version() -> String {
    DEFAULT_STRIPE_VERSION.to_owned()
}
