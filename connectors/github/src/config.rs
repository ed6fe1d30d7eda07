//! [`GithubConfig`]: the `[pipelines.NAME.source]` block of `kind = "github"`.

use std::collections::BTreeMap;

use dovetail_core::Secret;
use dovetail_http::HttpConfig;
use schemars::JsonSchema;
use serde::Deserialize;

/// The GitHub REST API of github.com.
pub const DEFAULT_BASE_URL: &str = "https://api.github.com";
/// The pinned REST API version, sent as `X-GitHub-Api-Version`.
pub const DEFAULT_API_VERSION: &str = "2022-11-28";

/// Config of the GitHub source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// Personal access token (classic or fine-grained) or a pre-minted GitHub App
    /// installation token, sent as `Authorization: Bearer …`. Write `${GITHUB_TOKEN}` or
    /// `${file:/path}`. Exactly one of `token` and `app`.
    pub token: Option<Secret>,
    /// Authenticate as a GitHub App installation (installation tokens minted and refreshed
    /// by the source). Exactly one of `token` and `app`.
    pub app: Option<AppConfig>,
    /// REST API root: `https://api.github.com` (default) or, for GitHub Enterprise Server,
    /// `https://HOST/api/v3`.
    #[serde(default = "default_base_url", deserialize_with = "dovetail_http::http_url")]
    pub base_url: String,
    /// The organization or user whose repositories are read.
    pub owner: String,
    /// Whether `owner` is an organization or a user; `auto` (default) tries the
    /// organization listing and falls back to the user listing on a 404.
    #[serde(default)]
    pub owner_type: OwnerType,
    /// Repositories to read, by name (`hello`) or full name (`octo/hello`), in this order.
    /// Empty (default): every repository of `owner`, as the `repositories` stream lists them.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Streams to expose. Empty (default): all of them.
    #[serde(default)]
    pub streams: Vec<GithubStream>,
    /// Settings of single streams, by stream name: `[…source.stream_options.issues]`.
    #[serde(default)]
    pub stream_options: BTreeMap<GithubStream, StreamSettings>,
    /// Pinned REST API version, sent as `X-GitHub-Api-Version` on every request.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// RFC 3339 timestamp: the first run reads only what was updated from then on
    /// (sent as `since`, as the end of the pull requests' descent, or as `created` for
    /// workflow runs).
    pub start_date: Option<String>,
    /// HTTP settings: timeouts, retries, client-side rate budget, proxy, CA certificates.
    #[serde(default)]
    pub http: HttpConfig,
}

/// A GitHub App installation to authenticate as (`app = { … }`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app's id (its settings page, "App ID").
    #[serde(deserialize_with = "dovetail_http::in_range_req::<_, _, 1, 9_007_199_254_740_991>")]
    #[schemars(range(min = 1, max = 9_007_199_254_740_991_u64))]
    pub app_id: u64,
    /// The app's private key, PEM (PKCS#1 as GitHub generates it, or PKCS#8): write
    /// `${file:/path/app.private-key.pem}`.
    pub private_key: Secret,
    /// The installation, by id. Exactly one of `installation_id` and `installation_owner`.
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 9_007_199_254_740_991>")]
    #[schemars(range(min = 1, max = 9_007_199_254_740_991_u64))]
    pub installation_id: Option<u64>,
    /// The installation, by the organization or user it is installed on.
    pub installation_owner: Option<String>,
}

/// Settings of one stream (`[pipelines.NAME.source.stream_options.<stream>]`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// `open`, `closed` or `all` (default): which issues or pull requests are listed
    /// (`issues` and `pull_requests` only).
    pub state: Option<ItemState>,
    /// Items per page, 1–100 (default 100, GitHub's maximum).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 100>")]
    #[schemars(range(min = 1, max = 100))]
    pub per_page: Option<u32>,
    /// Extra query parameters of the listing (`labels = "bug"`, `branch = "main"`); the
    /// ones the source sets itself (`per_page`, `page`, `since`, `sort`, `direction`,
    /// `state`, `created`) are refused.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Read at most this many pages per run (a preview): a run cut short by it does not
    /// complete the pass (the cursor does not move, no deletes); the next run continues.
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 1_000_000>")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_pages: Option<u32>,
}

/// Which issues or pull requests a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Open only.
    Open,
    /// Closed (and merged) only.
    Closed,
    /// Both.
    All,
}

impl ItemState {
    /// The `state` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Open => "open",
            ItemState::Closed => "closed",
            ItemState::All => "all",
        }
    }
}

/// What kind of account `owner` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OwnerType {
    /// Try `/orgs/{owner}/repos`, then `/users/{owner}/repos` on a 404.
    #[default]
    Auto,
    /// An organization: `/orgs/{owner}/repos`.
    Org,
    /// A user: `/users/{owner}/repos`.
    User,
}

/// The streams of the GitHub source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GithubStream {
    /// Repositories of the owner.
    Repositories,
    /// Issues, pull requests included (`is_pull_request`).
    Issues,
    /// Pull requests.
    PullRequests,
    /// Comments on issues and pull requests.
    IssueComments,
    /// Commits of the default branch.
    Commits,
    /// Releases.
    Releases,
    /// GitHub Actions workflow runs.
    WorkflowRuns,
}

impl GithubStream {
    /// Every stream, in the order they are listed.
    pub const ALL: [GithubStream; 7] = [
        GithubStream::Repositories,
        GithubStream::Issues,
        GithubStream::PullRequests,
        GithubStream::IssueComments,
        GithubStream::Commits,
        GithubStream::Releases,
        GithubStream::WorkflowRuns,
    ];

    /// The stream's name (the table name in a database sink).
    pub fn name(self) -> &'static str {
        match self {
            GithubStream::Repositories => "repositories",
            GithubStream::Issues => "issues",
            GithubStream::PullRequests => "pull_requests",
            GithubStream::IssueComments => "issue_comments",
            GithubStream::Commits => "commits",
            GithubStream::Releases => "releases",
            GithubStream::WorkflowRuns => "workflow_runs",
        }
    }

    /// The stream called `name`.
    pub fn from_name(name: &str) -> Option<GithubStream> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}
