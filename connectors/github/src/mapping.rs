//! GitHub objects → flat rows, and the rows' JSON Schemas.
//!
//! One type per stream, each column written once: it decodes GitHub's object (renaming and
//! flattening with the `deserialize_with` helpers of `models.rs`: a user to its login,
//! labels to their names) and serializes as the row; its schema is the serialize side.
//! `repository` (and a pull request's head and base columns) are filled in after decoding.
//! Commits nest what their row flattens, so they keep a model (`models::Commit`).
//!
//! The source emits these rows as record data (not GitHub's raw objects). The engine's drift
//! detection therefore watches the rows, whose shape is this file's; a GitHub object that no
//! longer decodes is dead-lettered with the field path and the raw object.

use dovetail_core::DriftClass;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::GithubStream;
use crate::models::{self, GitRef};

/// A row of `repositories`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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
    #[serde(rename(deserialize = "owner"), default, deserialize_with = "models::login")]
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
    #[serde(default, deserialize_with = "models::or_empty")]
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct IssueRow {
    /// Issue id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// Number within the repository.
    pub number: u64,
    /// `owner/name`.
    #[serde(skip_deserializing)]
    pub repository: String,
    /// Title.
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    /// `completed`, `not_planned`, `reopened`, `duplicate`.
    pub state_reason: Option<String>,
    /// Author login (null for a deleted user).
    #[serde(rename(deserialize = "user"), default, deserialize_with = "models::login")]
    pub user_login: Option<String>,
    /// Label names.
    #[serde(default, deserialize_with = "models::label_names")]
    pub labels: Vec<String>,
    /// Assignee logins.
    #[serde(default, deserialize_with = "models::logins")]
    pub assignees: Vec<String>,
    /// Milestone title.
    #[serde(default, deserialize_with = "models::milestone_title")]
    pub milestone: Option<String>,
    /// Number of comments.
    pub comments: u64,
    /// Locked.
    pub locked: Option<bool>,
    /// The issue is a pull request.
    #[serde(rename(deserialize = "pull_request"), default, deserialize_with = "models::present")]
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct PullRequestRow {
    /// Pull request id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// Number within the repository.
    pub number: u64,
    /// `owner/name`.
    #[serde(skip_deserializing)]
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
    #[serde(rename(deserialize = "user"), default, deserialize_with = "models::login")]
    pub user_login: Option<String>,
    /// Label names.
    #[serde(default, deserialize_with = "models::label_names")]
    pub labels: Vec<String>,
    /// Assignee logins.
    #[serde(default, deserialize_with = "models::logins")]
    pub assignees: Vec<String>,
    /// Requested reviewer logins.
    #[serde(default, deserialize_with = "models::logins")]
    pub requested_reviewers: Vec<String>,
    /// Milestone title.
    #[serde(default, deserialize_with = "models::milestone_title")]
    pub milestone: Option<String>,
    /// Head branch.
    #[serde(skip_deserializing)]
    pub head_ref: String,
    /// Head commit.
    #[serde(skip_deserializing)]
    pub head_sha: String,
    /// Base branch.
    #[serde(skip_deserializing)]
    pub base_ref: String,
    /// Base commit.
    #[serde(skip_deserializing)]
    pub base_sha: String,
    /// GitHub's `head`, read into the four columns above.
    #[serde(skip_serializing)]
    #[schemars(skip)]
    head: GitRef,
    /// GitHub's `base`.
    #[serde(skip_serializing)]
    #[schemars(skip)]
    base: GitRef,
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct IssueCommentRow {
    /// Comment id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// `owner/name`.
    #[serde(skip_deserializing)]
    pub repository: String,
    /// Number of the issue or pull request commented on (from `issue_url`).
    #[serde(rename(deserialize = "issue_url"), deserialize_with = "models::issue_number")]
    pub issue_number: Option<u64>,
    /// Author login.
    #[serde(rename(deserialize = "user"), default, deserialize_with = "models::login")]
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct ReleaseRow {
    /// Release id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// `owner/name`.
    #[serde(skip_deserializing)]
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
    #[serde(rename(deserialize = "author"), default, deserialize_with = "models::login")]
    pub author_login: Option<String>,
    /// Asset file names.
    #[serde(default, deserialize_with = "models::asset_names")]
    pub assets: Vec<String>,
    /// Web page.
    pub html_url: String,
    /// Created.
    pub created_at: String,
    /// Published (null for drafts).
    pub published_at: Option<String>,
}

/// A row of `workflow_runs`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct WorkflowRunRow {
    /// Run id.
    pub id: u64,
    /// GraphQL node id.
    pub node_id: String,
    /// `owner/name`.
    #[serde(skip_deserializing)]
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
    #[serde(rename(deserialize = "actor"), default, deserialize_with = "models::login")]
    pub actor_login: Option<String>,
    /// Login of the user who started this attempt.
    #[serde(rename(deserialize = "triggering_actor"), default, deserialize_with = "models::login")]
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

/// The JSON Schema of a stream's rows: what the rows serialize to (columns by their row
/// names). A row always has every column; one that may be null is not `required`.
pub fn schema(stream: GithubStream) -> Value {
    fn of<T: JsonSchema>() -> Value {
        let generator = schemars::generate::SchemaSettings::default().for_serialize().into_generator();
        let mut s = generator.into_root_schema_for::<T>().to_value();
        let mut nullable = Vec::new();
        for (k, p) in s["properties"].as_object_mut().into_iter().flatten() {
            // Defaults and read-only marks describe decoding GitHub's object, not the row.
            if let Some(p) = p.as_object_mut() {
                p.remove("default");
                p.remove("readOnly");
            }
            if p["type"].as_array().is_some_and(|t| t.iter().any(|t| t == "null")) {
                nullable.push(k.clone());
            }
        }
        if let Some(req) = s["required"].as_array_mut() {
            req.retain(|k| !k.as_str().is_some_and(|k| nullable.iter().any(|n| n == k)));
        }
        s
    }
    match stream {
        GithubStream::Repositories => of::<RepositoryRow>(),
        GithubStream::Issues => of::<IssueRow>(),
        GithubStream::PullRequests => of::<PullRequestRow>(),
        GithubStream::IssueComments => of::<IssueCommentRow>(),
        GithubStream::Commits => of::<CommitRow>(),
        GithubStream::Releases => of::<ReleaseRow>(),
        GithubStream::WorkflowRuns => of::<WorkflowRunRow>(),
    }
}

/// Map one GitHub object of `stream`, read from `repository` (`owner/name`; unused for
/// `repositories`), to its flat row.
pub fn map(stream: GithubStream, repository: &str, raw: &Value) -> Result<Value, MapError> {
    let repository = repository.to_owned();
    match stream {
        GithubStream::Repositories => row(decode::<RepositoryRow>(raw)?),
        GithubStream::Issues => row(IssueRow { repository, ..decode(raw)? }),
        GithubStream::PullRequests => {
            let p: PullRequestRow = decode(raw)?;
            let (head, base) = (p.head.clone(), p.base.clone());
            row(PullRequestRow {
                repository,
                head_ref: head.git_ref,
                head_sha: head.sha,
                base_ref: base.git_ref,
                base_sha: base.sha,
                ..p
            })
        }
        GithubStream::IssueComments => row(IssueCommentRow { repository, ..decode(raw)? }),
        GithubStream::Commits => row(commit_row(decode(raw)?, repository)),
        GithubStream::Releases => row(ReleaseRow { repository, ..decode(raw)? }),
        GithubStream::WorkflowRuns => row(WorkflowRunRow { repository, ..decode(raw)? }),
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

fn row<R: Serialize>(r: R) -> Result<Value, MapError> {
    serde_json::to_value(r).map_err(|e| MapError { path: None, reason: format!("cannot encode the row: {e}") })
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
        author_login: c.author,
        committer_name: committer.name,
        committer_email: committer.email,
        committer_login: c.committer,
        parents: c.parents.into_iter().map(|p| p.sha).collect(),
        comment_count: c.commit.comment_count,
        html_url: c.html_url,
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
