//! `[state.retention]`: how long run history, explain stories and accepted drift are kept.

use std::time::Duration;

use dovetail_core::Error;
use dovetail_core::explain::{DEFAULT_RETAIN_AGE, DEFAULT_RETAIN_RUNS, Retention};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::de::DeTable;

use crate::diag::{Doc, offset_of};

/// `[state.retention]`: pruned after each run, in batches of 1000 rows.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Runs kept per pipeline, newest first, with their explain stories and fetched pages
    /// (default 50; the newest run is always kept).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 1_000_000>")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub runs: Option<u64>,
    /// Runs, explain stories and accepted drift events older than this go: a number and a
    /// unit `s`, `m`, `h`, `d` or `w`, e.g. `"30d"` (the default).
    pub max_age: Option<String>,
    /// Dead letters not seen again for this long go, e.g. `"90d"`. Default: never — a dead
    /// letter is a record still owed to the sink, removed when `dead-letters replay` delivers it.
    pub dead_letters_max_age: Option<String>,
    /// `false` turns pruning off (everything is kept forever).
    pub prune: Option<bool>,
}

/// The engine's retention from config (`None`: pruning is off).
pub fn resolve(doc: &Doc, root: &DeTable<'_>, cfg: Option<&RetentionConfig>) -> Result<Option<Retention>, Error> {
    let cfg = cfg.cloned().unwrap_or_default();
    if cfg.prune == Some(false) {
        return Ok(None);
    }
    let age = |key: &str, v: Option<&String>| -> Result<Option<Duration>, Error> {
        v.map(|s| {
            parse_age(s).ok_or_else(|| {
                doc.error(
                    offset_of(root, &["state", "retention", key]),
                    format!("`state.retention.{key}` = \"{s}\" is not an age; write a number and a unit (s, m, h, d, w), e.g. \"30d\""),
                )
            })
        })
        .transpose()
    };
    Ok(Some(Retention {
        runs: Some(cfg.runs.unwrap_or(DEFAULT_RETAIN_RUNS).max(1)),
        max_age: Some(age("max_age", cfg.max_age.as_ref())?.unwrap_or(DEFAULT_RETAIN_AGE)),
        dead_letters_max_age: age("dead_letters_max_age", cfg.dead_letters_max_age.as_ref())?,
        ..Retention::default()
    }))
}

/// `"30d"`, `"12h"`, `"90 m"`, `"2w"`, `"45s"`.
fn parse_age(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..split].parse().ok()?;
    let unit = match s[split..].trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_age("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age(" 12 h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("2w"), Some(Duration::from_secs(14 * 86_400)));
        for bad in ["30", "d", "3 days", "-1d", ""] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }
}
