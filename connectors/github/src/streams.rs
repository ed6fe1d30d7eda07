//! The streams: endpoint, query, primary key, cursor and schema of each.

use dovetail_core::{FieldPath, StreamSpec};
use dovetail_http::{Request, encode_segment};

use crate::config::{GithubStream, ItemState, StreamSettings};
use crate::mapping;

/// Page size asked for when `per_page` is not set (GitHub's maximum).
pub const PER_PAGE: u32 = 100;

/// Query parameters the source sets itself; `stream_options.<stream>.query` may not.
pub const OWN_PARAMS: [&str; 7] = ["per_page", "page", "since", "sort", "direction", "state", "created"];

/// How a stream's listing is read.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// JSON pointer of the items when the body is not the array itself.
    pub items: Option<&'static str>,
    /// The row field the stream's cursor is (also used to filter below the lower bound).
    pub cursor: Option<&'static str>,
    /// The listing takes `since` (else the source filters by the cursor).
    pub since_param: bool,
    /// The listing is read newest-first and the descent stops at the lower bound.
    pub newest_first: bool,
    /// Statuses that mean "nothing here" for a repository (issues disabled: 410; an empty
    /// repository has no commits: 409): the repository is skipped with a warning.
    pub skip_statuses: &'static [u16],
}

/// The endpoint facts of a stream.
pub fn endpoint(s: GithubStream) -> Endpoint {
    let e = Endpoint {
        items: None,
        cursor: Some("updated_at"),
        since_param: false,
        newest_first: false,
        skip_statuses: &[],
    };
    match s {
        GithubStream::Repositories => Endpoint { cursor: None, ..e },
        GithubStream::Issues => Endpoint { since_param: true, skip_statuses: &[410], ..e },
        GithubStream::PullRequests => Endpoint { newest_first: true, ..e },
        GithubStream::IssueComments => Endpoint { since_param: true, skip_statuses: &[410], ..e },
        GithubStream::Commits => {
            Endpoint { cursor: Some("committed_at"), since_param: true, skip_statuses: &[409], ..e }
        }
        GithubStream::Releases => Endpoint { cursor: None, ..e },
        GithubStream::WorkflowRuns => Endpoint { items: Some("/workflow_runs"), ..e },
    }
}

/// The stream's spec: primary key, cursor, and the JSON Schema of its rows.
pub fn spec(s: GithubStream) -> StreamSpec {
    let pk: &[&str] = match s {
        GithubStream::Commits => &["repository", "sha"],
        _ => &["id"],
    };
    let mut spec = StreamSpec::new(s.name(), pk.iter().map(|f| FieldPath::new(*f)).collect());
    if let Some(c) = endpoint(s).cursor {
        spec = spec.with_cursor(FieldPath::new(c));
    }
    spec.schema = Some(mapping::schema(s));
    spec
}

/// The first request of a listing (paths are relative: the base URL may carry a path,
/// `https://HOST/api/v3/`). `owner_kind` is `orgs` or `users` (for repositories);
/// `repo` is `owner/name`; `since` goes out as the `since` parameter; `set` adds the
/// stream's `state`, `per_page` and extra `query`.
pub fn first_request(
    s: GithubStream,
    owner: &str,
    owner_kind: &str,
    repo: Option<&str>,
    since: Option<&str>,
    set: &StreamSettings,
) -> Request {
    let per_page = set.per_page.unwrap_or(PER_PAGE).to_string();
    let state = set.state.unwrap_or(ItemState::All).as_str();
    let per_page = per_page.as_str();
    let base = |tail: &str| {
        let (o, r) = repo.and_then(|r| r.split_once('/')).unwrap_or(("", ""));
        format!("repos/{}/{}/{tail}", encode_segment(o), encode_segment(r))
    };
    let req = match s {
        GithubStream::Repositories => {
            Request::get(format!("{owner_kind}/{}/repos", encode_segment(owner))).query("per_page", per_page)
        }
        GithubStream::Issues => Request::get(base("issues"))
            .query("state", state)
            .query("sort", "updated")
            .query("direction", "asc")
            .query("per_page", per_page),
        // No `since` here: newest first, and the source stops at the lower bound.
        GithubStream::PullRequests => Request::get(base("pulls"))
            .query("state", state)
            .query("sort", "updated")
            .query("direction", "desc")
            .query("per_page", per_page),
        GithubStream::IssueComments => Request::get(base("issues/comments"))
            .query("sort", "updated")
            .query("direction", "asc")
            .query("per_page", per_page),
        GithubStream::Commits => Request::get(base("commits")).query("per_page", per_page),
        GithubStream::Releases => Request::get(base("releases")).query("per_page", per_page),
        GithubStream::WorkflowRuns => Request::get(base("actions/runs")).query("per_page", per_page),
    };
    // Listings are re-read every run; an unchanged page is a 304, which GitHub does not
    // count against the rate limit (only effective when the runner hands in a cache).
    let mut req = req.cacheable(true);
    for (k, v) in &set.query {
        req = req.query(k, v);
    }
    match since {
        Some(v) if endpoint(s).since_param => req.query("since", v),
        Some(v) if s == GithubStream::WorkflowRuns => match created_bound(v) {
            Some(low) => req.query("created", format!(">={low}")),
            None => req,
        },
        _ => req,
    }
}

/// How long after its creation a workflow run can still change (re-runs): GitHub allows
/// re-running a workflow for 30 days.
const RERUN_WINDOW_HOURS: i64 = 30 * 24;

/// The `created` lower bound of the workflow runs listing: the cursor (`updated_at`) less
/// the re-run window, since a run created before the cursor may have been updated after it.
fn created_bound(since: &str) -> Option<jiff::Timestamp> {
    let t: jiff::Timestamp = since.parse().ok()?;
    t.checked_sub(jiff::SignedDuration::from_hours(RERUN_WINDOW_HOURS)).ok()
}

/// Check one stream's settings, naming the offending key.
pub fn validate(s: GithubStream, set: &StreamSettings) -> Result<(), String> {
    let at = format!("`stream_options.{}", s.name());
    if set.state.is_some() && !matches!(s, GithubStream::Issues | GithubStream::PullRequests) {
        return Err(format!("{at}.state`: only `issues` and `pull_requests` have a state"));
    }
    if let Some(k) = set.query.keys().find(|k| OWN_PARAMS.contains(&k.as_str())) {
        return Err(format!(
            "{at}.query.{k}`: the source sets `{k}` itself (use {})",
            match k.as_str() {
                "per_page" => "`per_page`",
                "state" => "`state`",
                "since" => "`start_date`",
                _ => "nothing: it is how the source pages and bounds the listing",
            }
        ));
    }
    Ok(())
}
