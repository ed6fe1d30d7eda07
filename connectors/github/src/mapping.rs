//! GitHub objects → flat rows (pure functions), and the rows' JSON Schemas.
//!
//! The source emits these rows as record data (not GitHub's raw objects): user objects
//! become logins, labels and assignees arrays of names, nested refs columns, and every row
//! of a per-repository stream names its `repository` (`owner/name`). The engine's drift
//! detection therefore watches the rows, whose shape is this file's; a GitHub object that no
//! longer decodes into its model is dead-lettered with the field path and the raw object.

use dovetail_core::DriftClass;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::GithubStream;
use crate::models::{self, login, logins};

/// A row of `repositories`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RepositoryRow {
    /// Repository id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// Name.
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    /// Owner login.
    pub owner_login: Option<String>,
    /// Private repository.
    pub private: bool,
    /// Description.
    pub description: Option<String>,
    /// A fork.
    pub fork: bool,
    /// Archived.
    pub archived: Option<bool>,
    /// Disabled.
    pub disabled: Option<bool>,
    /// `public`, `private` or `internal`.
    pub visibility: Option<String>,
    /// Default branch.
    pub default_branch: Option<String>,
    /// Main language.
    pub language: Option<String>,
    /// Topics.
    pub topics: Vec<String>,
    /// Stars.
    pub stargazers_count: Option<u64>,
    /// Forks.
    pub forks_count: Option<u64>,
    /// Open issues and pull requests.
    pub open_issues_count: Option<u64>,
    /// Web page.
    pub html_url: String,
    /// Created.
    pub created_at: Option<String>,
    /// Last updated.
    pub updated_at: Option<String>,
    /// Last push.
    pub pushed_at: Option<String>,
}

/// A row of `issues` (pull requests included, flagged `is_pull_request`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct IssueRow {
    /// Issue id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// Number within the repository.
    pub number: u64,
    /// `owner/name`.
    pub repository: String,
    /// Title.
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    /// `completed`, `not_planned`, `reopened`, `duplicate`.
    pub state_reason: Option<String>,
    /// Author login (null for a deleted user).
    pub user_login: Option<String>,
    /// Label names.
    pub labels: Vec<String>,
    /// Assignee logins.
    pub assignees: Vec<String>,
    /// Milestone title.
    pub milestone: Option<String>,
    /// Number of comments.
    pub comments: u64,
    /// Locked.
    pub locked: Option<bool>,
    /// The issue is a pull request.
    pub is_pull_request: bool,
    /// The author's association with the repository.
    pub author_association: Option<String>,
    /// Web page.
    pub html_url: String,
    /// Created.
    pub created_at: String,
    /// Last updated (cursor).
    pub updated_at: String,
    /// Closed.
    pub closed_at: Option<String>,
    /// Body (Markdown).
    pub body: Option<String>,
}

/// A row of `pull_requests`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PullRequestRow {
    /// Pull request id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// Number within the repository.
    pub number: u64,
    /// `owner/name`.
    pub repository: String,
    /// Title.
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    /// Draft.
    pub draft: Option<bool>,
    /// Locked.
    pub locked: Option<bool>,
    /// Author login.
    pub user_login: Option<String>,
    /// Label names.
    pub labels: Vec<String>,
    /// Assignee logins.
    pub assignees: Vec<String>,
    /// Requested reviewer logins.
    pub requested_reviewers: Vec<String>,
    /// Milestone title.
    pub milestone: Option<String>,
    /// Head branch.
    pub head_ref: String,
    /// Head commit.
    pub head_sha: String,
    /// Base branch.
    pub base_ref: String,
    /// Base commit.
    pub base_sha: String,
    /// Merge commit.
    pub merge_commit_sha: Option<String>,
    /// The author's association with the repository.
    pub author_association: Option<String>,
    /// Web page.
    pub html_url: String,
    /// Created.
    pub created_at: String,
    /// Last updated (cursor).
    pub updated_at: String,
    /// Closed.
    pub closed_at: Option<String>,
    /// Merged.
    pub merged_at: Option<String>,
    /// Body (Markdown).
    pub body: Option<String>,
}

/// A row of `issue_comments`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IssueCommentRow {
    /// Comment id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// `owner/name`.
    pub repository: String,
    /// Number of the issue or pull request commented on (from `issue_url`).
    pub issue_number: Option<u64>,
    /// Author login.
    pub user_login: Option<String>,
    /// The author's association with the repository.
    pub author_association: Option<String>,
    /// Body (Markdown).
    pub body: Option<String>,
    /// Web page.
    pub html_url: String,
    /// Created.
    pub created_at: String,
    /// Last updated (cursor).
    pub updated_at: String,
}

/// A row of `commits`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CommitRow {
    /// Commit SHA.
    pub sha: String,
    /// GraphQL node id.
    pub node_id: String,
    /// `owner/name`.
    pub repository: String,
    /// Message.
    pub message: String,
    /// Git author name.
    pub author_name: Option<String>,
    /// Git author email.
    pub author_email: Option<String>,
    /// Authored.
    pub authored_at: Option<String>,
    /// GitHub login of the author, when the email matches an account.
    pub author_login: Option<String>,
    /// Git committer name.
    pub committer_name: Option<String>,
    /// Git committer email.
    pub committer_email: Option<String>,
    /// Committed (`commit.committer.date`, else the author date; cursor).
    pub committed_at: Option<String>,
    /// GitHub login of the committer.
    pub committer_login: Option<String>,
    /// Parent SHAs.
    pub parents: Vec<String>,
    /// Commit comments.
    pub comment_count: Option<u64>,
    /// Web page.
    pub html_url: String,
}

/// A row of `releases`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReleaseRow {
    /// Release id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// `owner/name`.
    pub repository: String,
    /// Tag.
    pub tag_name: String,
    /// Branch or commit the tag is created from.
    pub target_commitish: String,
    /// Title.
    pub name: Option<String>,
    /// Notes (Markdown).
    pub body: Option<String>,
    /// Draft.
    pub draft: bool,
    /// Pre-release.
    pub prerelease: bool,
    /// Author login.
    pub author_login: Option<String>,
    /// Asset file names.
    pub assets: Vec<String>,
    /// Web page.
    pub html_url: String,
    /// Created.
    pub created_at: String,
    /// Published (null for drafts).
    pub published_at: Option<String>,
}

/// A row of `workflow_runs`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkflowRunRow {
    /// Run id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// `owner/name`.
    pub repository: String,
    /// Workflow name.
    pub name: Option<String>,
    /// Title shown for the run.
    pub display_title: Option<String>,
    /// Workflow id.
    pub workflow_id: u64,
    /// Run number within the workflow.
    pub run_number: u64,
    /// Attempt.
    pub run_attempt: Option<u64>,
    /// Triggering event.
    pub event: String,
    /// `queued`, `in_progress`, `completed`, ...
    pub status: Option<String>,
    /// `success`, `failure`, ... (null until completed).
    pub conclusion: Option<String>,
    /// Head branch.
    pub head_branch: Option<String>,
    /// Head commit.
    pub head_sha: String,
    /// Login of the user who started the first attempt.
    pub actor_login: Option<String>,
    /// Login of the user who started this attempt.
    pub triggering_actor_login: Option<String>,
    /// Web page.
    pub html_url: String,
    /// Created.
    pub created_at: String,
    /// Last updated (cursor).
    pub updated_at: String,
    /// Started.
    pub run_started_at: Option<String>,
}

/// Why a GitHub object could not become a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// Field path within the object (`user.login`), when known.
    pub path: Option<String>,
    /// What was wrong.
    pub reason: String,
}

/// The JSON Schema of a stream's rows.
pub fn schema(stream: GithubStream) -> Value {
    let s = match stream {
        GithubStream::Repositories => schemars::schema_for!(RepositoryRow),
        GithubStream::Issues => schemars::schema_for!(IssueRow),
        GithubStream::PullRequests => schemars::schema_for!(PullRequestRow),
        GithubStream::IssueComments => schemars::schema_for!(IssueCommentRow),
        GithubStream::Commits => schemars::schema_for!(CommitRow),
        GithubStream::Releases => schemars::schema_for!(ReleaseRow),
        GithubStream::WorkflowRuns => schemars::schema_for!(WorkflowRunRow),
    };
    s.to_value()
}

/// Map one GitHub object of `stream`, read from `repository` (`owner/name`; unused for
/// `repositories`), to its flat row.
pub fn map(stream: GithubStream, repository: &str, raw: &Value) -> Result<Value, MapError> {
    let repo = repository.to_owned();
    match stream {
        GithubStream::Repositories => row(decode::<models::Repository>(raw)?, repository_row),
        GithubStream::Issues => row(decode::<models::Issue>(raw)?, |i| issue_row(i, repo)),
        GithubStream::PullRequests => row(decode::<models::PullRequest>(raw)?, |p| pull_row(p, repo)),
        GithubStream::IssueComments => row(decode::<models::IssueComment>(raw)?, |c| comment_row(c, repo)),
        GithubStream::Commits => row(decode::<models::Commit>(raw)?, |c| commit_row(c, repo)),
        GithubStream::Releases => row(decode::<models::Release>(raw)?, |r| release_row(r, repo)),
        GithubStream::WorkflowRuns => row(decode::<models::WorkflowRun>(raw)?, |w| run_row(w, repo)),
    }
}

/// Arrays a row of `stream` reads as `[]` when GitHub sends null or nothing.
fn defaulted_arrays(stream: GithubStream) -> &'static [&'static str] {
    match stream {
        GithubStream::Repositories => &["topics"],
        GithubStream::Issues => &["labels", "assignees"],
        GithubStream::PullRequests => &["labels", "assignees", "requested_reviewers"],
        GithubStream::Commits => &["parents"],
        GithubStream::Releases => &["assets"],
        GithubStream::IssueComments | GithubStream::WorkflowRuns => &[],
    }
}

/// The coercions [`map`] makes on `raw`: each array GitHub sent as null (or left out) that
/// the row holds as `[]`, as a drift event at the row's field (`null_value` or
/// `missing_field`), so the engine records it instead of the default passing silently.
/// `at` names the object (`GET …/issues item 3`).
pub fn coercions(stream: GithubStream, raw: &Value, at: &dyn Fn() -> String) -> Vec<dovetail_core::drift::DriftEvent> {
    let mut out = Vec::new();
    for field in defaulted_arrays(stream) {
        let (change, observed) = match raw.get(*field) {
            Some(Value::Null) => (DriftClass::NullValue, "null (read as [])"),
            None => (DriftClass::MissingField, "absent (read as [])"),
            Some(_) => continue,
        };
        out.push(dovetail_core::drift::DriftEvent {
            path: format!("/{field}"),
            change,
            expected: "array".to_owned(),
            observed: observed.to_owned(),
            count: 1,
            first_seen: dovetail_core::now_rfc3339(),
            first_at: at(),
        });
    }
    out
}

fn decode<T: DeserializeOwned>(raw: &Value) -> Result<T, MapError> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        MapError { path: (path != ".").then_some(path), reason: e.into_inner().to_string() }
    })
}

fn row<T, R: Serialize>(v: T, f: impl FnOnce(T) -> R) -> Result<Value, MapError> {
    serde_json::to_value(f(v)).map_err(|e| MapError { path: None, reason: format!("cannot encode the row: {e}") })
}

fn label_names(ls: &[models::LabelRef]) -> Vec<String> {
    ls.iter().filter_map(models::LabelRef::name).collect()
}

fn repository_row(r: models::Repository) -> RepositoryRow {
    RepositoryRow {
        id: r.id,
        node_id: r.node_id,
        name: r.name,
        full_name: r.full_name,
        owner_login: login(&r.owner),
        private: r.private,
        description: r.description,
        fork: r.fork,
        archived: r.archived,
        disabled: r.disabled,
        visibility: r.visibility,
        default_branch: r.default_branch,
        language: r.language,
        topics: r.topics.unwrap_or_default(),
        stargazers_count: r.stargazers_count,
        forks_count: r.forks_count,
        open_issues_count: r.open_issues_count,
        html_url: r.html_url,
        created_at: r.created_at,
        updated_at: r.updated_at,
        pushed_at: r.pushed_at,
    }
}

fn issue_row(i: models::Issue, repository: String) -> IssueRow {
    IssueRow {
        id: i.id,
        node_id: i.node_id,
        number: i.number,
        repository,
        title: i.title,
        state: i.state,
        state_reason: i.state_reason,
        user_login: login(&i.user),
        labels: label_names(&i.labels),
        assignees: logins(i.assignees.as_deref().unwrap_or_default()),
        milestone: i.milestone.and_then(|m| m.title),
        comments: i.comments,
        locked: i.locked,
        is_pull_request: i.pull_request.is_some_and(|p| !p.is_null()),
        author_association: i.author_association,
        html_url: i.html_url,
        created_at: i.created_at,
        updated_at: i.updated_at,
        closed_at: i.closed_at,
        body: i.body,
    }
}

fn pull_row(p: models::PullRequest, repository: String) -> PullRequestRow {
    PullRequestRow {
        id: p.id,
        node_id: p.node_id,
        number: p.number,
        repository,
        title: p.title,
        state: p.state,
        draft: p.draft,
        locked: p.locked,
        user_login: login(&p.user),
        labels: label_names(&p.labels),
        assignees: logins(p.assignees.as_deref().unwrap_or_default()),
        requested_reviewers: logins(p.requested_reviewers.as_deref().unwrap_or_default()),
        milestone: p.milestone.and_then(|m| m.title),
        head_ref: p.head.git_ref,
        head_sha: p.head.sha,
        base_ref: p.base.git_ref,
        base_sha: p.base.sha,
        merge_commit_sha: p.merge_commit_sha,
        author_association: p.author_association,
        html_url: p.html_url,
        created_at: p.created_at,
        updated_at: p.updated_at,
        closed_at: p.closed_at,
        merged_at: p.merged_at,
        body: p.body,
    }
}

fn comment_row(c: models::IssueComment, repository: String) -> IssueCommentRow {
    let issue_number = c.issue_url.rsplit('/').next().and_then(|n| n.parse().ok());
    IssueCommentRow {
        id: c.id,
        node_id: c.node_id,
        repository,
        issue_number,
        user_login: login(&c.user),
        author_association: c.author_association,
        body: c.body,
        html_url: c.html_url,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

fn commit_row(c: models::Commit, repository: String) -> CommitRow {
    let author = c.commit.author.unwrap_or_default();
    let committer = c.commit.committer.unwrap_or_default();
    CommitRow {
        sha: c.sha,
        node_id: c.node_id,
        repository,
        message: c.commit.message,
        committed_at: committer.date.or_else(|| author.date.clone()),
        author_name: author.name,
        author_email: author.email,
        authored_at: author.date,
        author_login: login(&c.author),
        committer_name: committer.name,
        committer_email: committer.email,
        committer_login: login(&c.committer),
        parents: c.parents.into_iter().map(|p| p.sha).collect(),
        comment_count: c.commit.comment_count,
        html_url: c.html_url,
    }
}

fn release_row(r: models::Release, repository: String) -> ReleaseRow {
    ReleaseRow {
        id: r.id,
        node_id: r.node_id,
        repository,
        tag_name: r.tag_name,
        target_commitish: r.target_commitish,
        name: r.name,
        body: r.body,
        draft: r.draft,
        prerelease: r.prerelease,
        author_login: login(&r.author),
        assets: r.assets.into_iter().map(|a| a.name).collect(),
        html_url: r.html_url,
        created_at: r.created_at,
        published_at: r.published_at,
    }
}

fn run_row(w: models::WorkflowRun, repository: String) -> WorkflowRunRow {
    WorkflowRunRow {
        id: w.id,
        node_id: w.node_id,
        repository,
        name: w.name,
        display_title: w.display_title,
        workflow_id: w.workflow_id,
        run_number: w.run_number,
        run_attempt: w.run_attempt,
        event: w.event,
        status: w.status,
        conclusion: w.conclusion,
        head_branch: w.head_branch,
        head_sha: w.head_sha,
        actor_login: login(&w.actor),
        triggering_actor_login: login(&w.triggering_actor),
        html_url: w.html_url,
        created_at: w.created_at,
        updated_at: w.updated_at,
        run_started_at: w.run_started_at,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn labels_may_be_names_or_objects_and_nulls_are_tolerated() {
        let raw = json!({
            "id": 1, "node_id": "n", "number": 7, "title": "t", "state": "open", "body": null,
            "user": null, "labels": ["bug", { "name": "ui" }, {}], "assignees": null,
            "milestone": null, "comments": 0, "html_url": "h", "created_at": "c",
            "updated_at": "u", "closed_at": null, "pull_request": { "url": "x" }
        });
        let row = map(GithubStream::Issues, "o/r", &raw).unwrap();
        assert_eq!(row["labels"], json!(["bug", "ui"]));
        assert_eq!(row["assignees"], json!([]));
        assert_eq!(row["user_login"], Value::Null);
        assert_eq!(row["is_pull_request"], json!(true));
        assert_eq!(row["repository"], json!("o/r"));
        // The `[]` read for `"assignees": null` is recorded, not silent.
        let c = coercions(GithubStream::Issues, &raw, &|| "item 0".into());
        let got: Vec<(&str, DriftClass, &str)> =
            c.iter().map(|e| (e.path.as_str(), e.change, e.observed.as_str())).collect();
        assert_eq!(got, [("/assignees", DriftClass::NullValue, "null (read as [])")]);
        let mut no_labels = raw.clone();
        no_labels.as_object_mut().unwrap().remove("labels");
        let c = coercions(GithubStream::Issues, &no_labels, &|| "item 0".into());
        assert_eq!((c[0].path.as_str(), c[0].change), ("/labels", DriftClass::MissingField));
    }

    #[test]
    fn an_object_that_does_not_decode_names_the_field() {
        let err = map(GithubStream::Issues, "o/r", &json!({ "id": "x" })).unwrap_err();
        assert_eq!(err.path.as_deref(), Some("id"), "{err:?}");
    }
}
