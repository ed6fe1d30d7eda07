//! The one error type of the crate's fallible public APIs.

use std::path::PathBuf;

/// Why loading, saving or serving fixtures failed.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Reading or writing a file failed.
    #[error("fixture file {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// A fixture file is not valid.
    #[error("fixture file {0}: {1}")]
    File(PathBuf, #[source] Box<FixtureError>),
    /// The text is not a fixture in JSON.
    #[error("fixture JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The fixture is well-formed JSON but not a valid fixture.
    #[error("invalid fixture: {0}")]
    Invalid(String),
    /// A loopback server could not start.
    #[error("cannot start the loopback server: {0}")]
    Bind(#[source] std::io::Error),
    /// The recorder's upstream URL is not a usable base URL.
    #[error("invalid upstream URL `{0}`")]
    Upstream(String),
}
