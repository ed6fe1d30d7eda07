//! What GitHub sends, as far as the flat rows need it.
//!
//! Field names and nullability follow GitHub's published REST API description
//! (`@octokit/openapi`, `generated/api.github.com.json`, schemas `minimal-repository`,
//! `issue`, `pull-request-simple`, `issue-comment`, `commit`, `release`, `workflow-run`).
//! Everything the description marks nullable (or that GitHub is known to send as null, such
//! as a deleted user: `"user": null`) is an `Option`; arrays default to empty when missing.
//! Unknown fields are ignored: only what a row needs is decoded.

use serde::Deserialize;

/// `simple-user` / `nullable-simple-user` (and commits' `empty-object` for unknown authors).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct User {
    /// The login; absent in the empty object commits carry for authors without an account.
    pub login: Option<String>,
}

/// Login of an optional user.
pub fn login(u: &Option<User>) -> Option<String> {
    u.as_ref().and_then(|u| u.login.clone())
}

/// Logins of a user list (missing logins dropped).
pub fn logins(us: &[User]) -> Vec<String> {
    us.iter().filter_map(|u| u.login.clone()).collect()
}

/// `minimal-repository`.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub node_id: String,
    pub name: String,
    pub full_name: String,
    pub owner: Option<User>,
    pub private: bool,
    pub html_url: String,
    pub description: Option<String>,
    pub fork: bool,
    pub archived: Option<bool>,
    pub disabled: Option<bool>,
    pub visibility: Option<String>,
    pub default_branch: Option<String>,
    pub language: Option<String>,
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    pub stargazers_count: Option<u64>,
    pub forks_count: Option<u64>,
    pub open_issues_count: Option<u64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub pushed_at: Option<String>,
}

/// An issue label: `issue.labels[]` is `oneOf` a name or a label object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LabelRef {
    /// Just the name.
    Name(String),
    /// A label object (`name` may be missing per the description).
    Label {
        /// The label's name.
        name: Option<String>,
    },
}

impl LabelRef {
    /// The label's name, when it has one.
    pub fn name(&self) -> Option<String> {
        match self {
            LabelRef::Name(n) => Some(n.clone()),
            LabelRef::Label { name } => name.clone(),
        }
    }
}

/// `milestone` (nullable).
#[derive(Debug, Clone, Deserialize)]
pub struct Milestone {
    pub title: Option<String>,
}

/// `issue`.
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub id: u64,
    pub node_id: String,
    pub number: u64,
    pub title: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub body: Option<String>,
    pub user: Option<User>,
    #[serde(default)]
    pub labels: Vec<LabelRef>,
    #[serde(default)]
    pub assignees: Option<Vec<User>>,
    pub milestone: Option<Milestone>,
    pub locked: Option<bool>,
    pub comments: u64,
    /// Present (an object) only when the issue is a pull request.
    pub pull_request: Option<serde_json::Value>,
    pub author_association: Option<String>,
    pub html_url: String,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
}

/// `head` / `base` of a pull request (`repo` is nullable in practice: a deleted fork).
#[derive(Debug, Clone, Deserialize)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
}

/// `pull-request-simple`.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub id: u64,
    pub node_id: String,
    pub number: u64,
    pub state: String,
    pub locked: Option<bool>,
    pub title: String,
    pub user: Option<User>,
    pub body: Option<String>,
    #[serde(default)]
    pub labels: Vec<LabelRef>,
    pub milestone: Option<Milestone>,
    #[serde(default)]
    pub assignees: Option<Vec<User>>,
    #[serde(default)]
    pub requested_reviewers: Option<Vec<User>>,
    pub head: GitRef,
    pub base: GitRef,
    pub draft: Option<bool>,
    pub merge_commit_sha: Option<String>,
    pub author_association: Option<String>,
    pub html_url: String,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
    pub merged_at: Option<String>,
}

/// `issue-comment`.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueComment {
    pub id: u64,
    pub node_id: String,
    pub body: Option<String>,
    pub user: Option<User>,
    pub author_association: Option<String>,
    pub html_url: String,
    pub issue_url: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `nullable-git-user`: a commit's author or committer as Git recorded it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GitUser {
    pub name: Option<String>,
    pub email: Option<String>,
    pub date: Option<String>,
}

/// `commit.commit`.
#[derive(Debug, Clone, Deserialize)]
pub struct GitCommit {
    pub author: Option<GitUser>,
    pub committer: Option<GitUser>,
    pub message: String,
    pub comment_count: Option<u64>,
}

/// `commit.parents[]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Parent {
    pub sha: String,
}

/// `commit`.
#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub sha: String,
    pub node_id: String,
    pub html_url: String,
    pub commit: GitCommit,
    /// The GitHub account of the author: null, or an empty object, when Git's author
    /// email matches no account.
    pub author: Option<User>,
    pub committer: Option<User>,
    #[serde(default)]
    pub parents: Vec<Parent>,
}

/// `release-asset` (only the name).
#[derive(Debug, Clone, Deserialize)]
pub struct Asset {
    pub name: String,
}

/// `release`.
#[derive(Debug, Clone, Deserialize)]
pub struct Release {
    pub id: u64,
    pub node_id: String,
    pub tag_name: String,
    pub target_commitish: String,
    pub name: Option<String>,
    pub body: Option<String>,
    pub draft: bool,
    pub prerelease: bool,
    pub author: Option<User>,
    #[serde(default)]
    pub assets: Vec<Asset>,
    pub html_url: String,
    pub created_at: String,
    pub published_at: Option<String>,
}

/// `workflow-run`.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRun {
    pub id: u64,
    pub node_id: String,
    pub name: Option<String>,
    pub display_title: Option<String>,
    pub workflow_id: u64,
    pub run_number: u64,
    pub run_attempt: Option<u64>,
    pub event: String,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub head_branch: Option<String>,
    pub head_sha: String,
    pub actor: Option<User>,
    pub triggering_actor: Option<User>,
    pub html_url: String,
    pub created_at: String,
    pub updated_at: String,
    pub run_started_at: Option<String>,
}
