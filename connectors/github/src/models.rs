//! What GitHub sends inside the objects the rows flatten, and the `deserialize_with`
//! helpers that flatten it (a user to its login, labels to their names).
//!
//! Field names and nullability follow GitHub's published REST API description
//! (`@octokit/openapi`, `generated/api.github.com.json`, schemas `minimal-repository`,
//! `issue`, `pull-request-simple`, `issue-comment`, `commit`, `release`, `workflow-run`).
//! Everything the description marks nullable (or that GitHub is known to send as null, such
//! as a deleted user: `"user": null`) is an `Option`; arrays default to empty when missing.
//! Unknown fields are ignored: only what a row needs is decoded.

use serde::{Deserialize, Deserializer};

/// `simple-user` / `nullable-simple-user` (and commits' `empty-object` for unknown authors).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct User {
    /// The login; absent in the empty object commits carry for authors without an account.
    pub login: Option<String>,
}

/// An issue label: `issue.labels[]` is `oneOf` a name or a label object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum LabelRef {
    /// Just the name.
    Name(String),
    /// A label object (`name` may be missing per the description).
    Label { name: Option<String> },
}

/// `milestone` (nullable).
#[derive(Debug, Clone, Deserialize)]
struct Milestone {
    title: Option<String>,
}

/// `release-asset` (only the name).
#[derive(Debug, Clone, Deserialize)]
struct Asset {
    name: String,
}

/// `head` / `base` of a pull request (`repo` is nullable in practice: a deleted fork).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GitRef {
    /// The branch.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit.
    pub sha: String,
}

/// The login of an optional user object.
pub fn login<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<User>::deserialize(d)?.and_then(|u| u.login))
}

/// The logins of an optional list of users (missing logins dropped).
pub fn logins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<User>>::deserialize(d)?.unwrap_or_default().into_iter().filter_map(|u| u.login).collect())
}

/// The names of a label list (names or label objects).
pub fn label_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let labels = Vec::<LabelRef>::deserialize(d)?;
    Ok(labels
        .into_iter()
        .filter_map(|l| match l {
            LabelRef::Name(n) => Some(n),
            LabelRef::Label { name } => name,
        })
        .collect())
}

/// The title of an optional milestone.
pub fn milestone_title<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Milestone>::deserialize(d)?.and_then(|m| m.title))
}

/// The names of a release's assets.
pub fn asset_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<Asset>::deserialize(d)?.into_iter().map(|a| a.name).collect())
}

/// An optional list read as empty when null.
pub fn or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Whether the value is there and not null (`pull_request` marks an issue as a PR).
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<serde::de::IgnoredAny>::deserialize(d)?.is_some())
}

/// The issue number at the end of an `issue_url`.
pub fn issue_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(String::deserialize(d)?.rsplit('/').next().and_then(|n| n.parse().ok()))
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

/// `commit`: nested where its row is flat, so the one stream with a model of its own.
#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub sha: String,
    pub node_id: String,
    pub html_url: String,
    pub commit: GitCommit,
    /// The GitHub account of the author: null, or an empty object, when Git's author
    /// email matches no account.
    #[serde(default, deserialize_with = "login")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "login")]
    pub committer: Option<String>,
    #[serde(default)]
    pub parents: Vec<Parent>,
}
