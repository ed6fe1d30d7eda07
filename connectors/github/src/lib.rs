//! dovetail-github: the GitHub source (`kind = "github"`).
//!
//! Streams (rows are flat: logins instead of user objects, label names, `repository` as
//! `owner/name`): `repositories`, `issues` (pull requests included, `is_pull_request`),
//! `pull_requests`, `issue_comments`, `commits`, `releases`, `workflow_runs`. Token auth
//! (`Authorization: Bearer`), GitHub Enterprise Server through `base_url`, the pinned
//! `X-GitHub-Api-Version`, Link-header pagination (`per_page=100`, the `next` URL followed as
//! given), incremental sync bounded on the server (`since`; pull requests newest first down
//! to the cursor; workflow runs by `created`), per-stream settings, conditional requests through the runner's response cache, and GitHub's primary and
//! secondary rate limits. README.md documents config, streams and token permissions.
//!
//! ```
//! use dovetail_core::{BuildCx, Source, SourceConnector};
//! use dovetail_github::{GithubConfig, GithubSource};
//!
//! let config: GithubConfig = serde_json::from_value(serde_json::json!({
//!     "token": "ghp_example", "owner": "octo", "repositories": ["hello"],
//!     "streams": ["issues", "commits"]
//! })).unwrap();
//! let source = GithubSource::build(config, &BuildCx::default()).unwrap();
//! let names: Vec<String> = source.streams().into_iter().map(|s| s.name).collect();
//! assert_eq!(names, ["issues", "commits"]);
//! ```
#![warn(missing_docs)]

mod app;
mod client;
mod config;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod mapping;
mod models;
mod source;
mod streams;

pub use client::{API_VERSION_HEADER, classifier, is_secondary_limit};
pub use config::{
    AppConfig, DEFAULT_API_VERSION, DEFAULT_BASE_URL, GithubConfig, GithubStream, ItemState, OwnerType, StreamSettings,
};
pub use source::GithubSource;

/// The `kind` of the GitHub source in config.
pub const KIND: &str = "github";
