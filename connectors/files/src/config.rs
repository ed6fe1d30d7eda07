//! Configuration of the `files` source, and its validation into per-stream plans.
//!
//! `build` turns a [`FilesSourceConfig`] into one [`StreamPlan`] per stream: paths resolved
//! against the config file's folder, the format settled, CSV options checked. No IO.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dovetail_core::{BuildCx, Error, FieldPath, StreamSpec};
use schemars::JsonSchema;
use serde::Deserialize;

/// Config of the `files` source: a list of streams, one file each.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesSourceConfig {
    /// The streams this source exposes, one file each.
    pub streams: Vec<StreamConfig>,
}

/// One stream read from one file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name, unique within the source (e.g. `orders`).
    pub name: String,
    /// File to read; a relative path is resolved against the config file's folder.
    pub path: PathBuf,
    /// File format. Defaults from the extension: `.jsonl` and `.ndjson` are `jsonl`, `.csv` is `csv`.
    #[serde(default)]
    pub format: Option<Format>,
    /// Primary-key field paths (one or more), e.g. `["id"]` or `["order_id", "line"]`.
    pub primary_key: Vec<FieldPath>,
    /// Field whose value only grows (e.g. `updated_at`), for incremental sync.
    #[serde(default)]
    pub cursor_field: Option<FieldPath>,
    /// The file is append-only: after a completed pass keep the byte offset, so the next run
    /// reads only what was appended. A last line without its newline is left for later.
    #[serde(default)]
    pub follow: bool,
    /// CSV only: the field delimiter, one ASCII character (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// CSV only: read an empty cell as `null` instead of `""` (default `true`).
    #[serde(default)]
    pub empty_as_null: Option<bool>,
}

/// Format of a stream's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line (JSON Lines / NDJSON).
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// CSV reading options of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CsvOptions {
    /// Field delimiter byte.
    pub delimiter: u8,
    /// Read empty cells as `null`.
    pub empty_as_null: bool,
}

/// How a stream is read: the validated form of a [`StreamConfig`].
#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    /// Stream name.
    pub name: String,
    /// The path as written in the config, used in messages and provenance.
    pub display: String,
    /// The resolved path that is opened.
    pub path: PathBuf,
    /// Format, and CSV options when it is CSV.
    pub format: PlanFormat,
    /// Primary-key field paths.
    pub primary_key: Vec<FieldPath>,
    /// Cursor field, if any.
    pub cursor_field: Option<FieldPath>,
    /// Keep the offset across passes.
    pub follow: bool,
}

/// The settled format of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanFormat {
    /// JSON Lines.
    Jsonl,
    /// CSV with its options.
    Csv(CsvOptions),
}

impl StreamPlan {
    /// The stream's spec as the engine sees it.
    pub(crate) fn spec(&self) -> StreamSpec {
        let spec = StreamSpec::new(self.name.clone(), self.primary_key.clone());
        match &self.cursor_field {
            Some(c) => spec.with_cursor(c.clone()),
            None => spec,
        }
    }
}

impl FilesSourceConfig {
    /// Validate every stream and resolve its path. Errors are [`dovetail_core::ErrorKind::Config`]
    /// and name the stream.
    pub(crate) fn plan(&self, cx: &BuildCx) -> Result<Vec<StreamPlan>, Error> {
        if self.streams.is_empty() {
            return Err(Error::config("the files source needs at least one entry in `streams`"));
        }
        let mut seen = BTreeSet::new();
        let mut plans = Vec::with_capacity(self.streams.len());
        for s in &self.streams {
            if s.name.trim().is_empty() {
                return Err(Error::config(format!(
                    "a stream of the files source (path `{}`) has an empty name",
                    s.path.display()
                )));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(Error::config(format!(
                    "stream `{}` is configured twice; stream names must be unique",
                    s.name
                )));
            }
            plans.push(s.plan(cx)?);
        }
        Ok(plans)
    }
}

impl StreamConfig {
    fn plan(&self, cx: &BuildCx) -> Result<StreamPlan, Error> {
        let name = &self.name;
        if self.primary_key.is_empty() {
            return Err(Error::config(format!("stream `{name}`: `primary_key` must list at least one field")));
        }
        if let Some(p) = self.primary_key.iter().find(|p| p.as_str().trim().is_empty()) {
            return Err(Error::config(format!("stream `{name}`: `primary_key` has an empty field path `{p}`")));
        }
        if self.path.as_os_str().is_empty() {
            return Err(Error::config(format!("stream `{name}`: `path` is empty")));
        }
        let format = match self.format {
            Some(f) => f,
            None => format_from_extension(&self.path).ok_or_else(|| {
                Error::config(format!(
                    "stream `{name}`: cannot tell the format of `{}` from its extension; set `format = \"jsonl\"` or `format = \"csv\"`",
                    self.path.display()
                ))
            })?,
        };
        let format = match format {
            Format::Jsonl => {
                let csv_only: Vec<&str> =
                    [("delimiter", self.delimiter.is_some()), ("empty_as_null", self.empty_as_null.is_some())]
                        .into_iter()
                        .filter_map(|(k, set)| set.then_some(k))
                        .collect();
                if !csv_only.is_empty() {
                    return Err(Error::config(format!(
                        "stream `{name}`: `{}` only {} to csv files, and this stream is jsonl",
                        csv_only.join("` and `"),
                        if csv_only.len() > 1 { "apply" } else { "applies" }
                    )));
                }
                PlanFormat::Jsonl
            }
            Format::Csv => {
                let delimiter = match self.delimiter {
                    None => b',',
                    Some(c) if c.is_ascii() && c != '"' && c != '\n' && c != '\r' => c as u8,
                    Some(c) => {
                        return Err(Error::config(format!(
                            "stream `{name}`: `delimiter` must be one ASCII character other than a quote or a line break, got {c:?}"
                        )));
                    }
                };
                PlanFormat::Csv(CsvOptions { delimiter, empty_as_null: self.empty_as_null.unwrap_or(true) })
            }
        };
        Ok(StreamPlan {
            name: name.clone(),
            display: self.path.display().to_string(),
            path: cx.resolve(&self.path),
            format,
            primary_key: self.primary_key.clone(),
            cursor_field: self.cursor_field.clone(),
            follow: self.follow,
        })
    }
}

fn format_from_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "csv" => Some(Format::Csv),
        _ => None,
    }
}
