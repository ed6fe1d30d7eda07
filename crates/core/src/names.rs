//! The closed sets of names dovetail stores, prints and configures: drift classes
//! ([`DriftClass`]), run and stream outcomes ([`RunOutcome`]) and pause kinds
//! ([`PauseKind`]).
//!
//! Each is an enum whose one spelling — its serde name, [`Display`](std::fmt::Display) and
//! `as_str` — is the string the state database holds and reports, logs, metrics labels,
//! alerts and status tables print; changing a spelling changes stored data, so the tests
//! below pin every one. [`FromStr`] reads a stored name back and refuses an unknown one with
//! an [`UnknownName`] that says what it is and what is known.

use std::fmt;
use std::str::FromStr;

/// A name that is not one of a closed set: a drift class, outcome or pause kind this
/// dovetail does not know (a database written by a newer one, a typo in a test).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}` (known: {})", known.join(", "))]
pub struct UnknownName {
    /// What the name should have been (`drift class`, `run outcome`, `pause kind`).
    pub what: &'static str,
    /// The name that was given.
    pub value: String,
    /// Every name that is known, in declaration order.
    pub known: Vec<&'static str>,
}

/// Implemented by the enums of this module: their variants and one name per variant.
trait Named: Copy + 'static {
    /// What a value is, for [`UnknownName`].
    const WHAT: &'static str;
    /// Every variant, in declaration order.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;

    fn parse(s: &str) -> Result<Self, UnknownName> {
        Self::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| UnknownName {
            what: Self::WHAT,
            value: s.to_owned(),
            known: Self::ALL.iter().map(|v| v.name()).collect(),
        })
    }
}

/// What kind of difference a [`DriftEvent`](crate::drift::DriftEvent) is (see
/// [`crate::drift`]); each class has its own action in [`DriftPolicy`](crate::DriftPolicy)
/// (`[pipelines.NAME.drift]` keys spelled as [`DriftClass::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// A field's JSON type is not one the baseline allows (also: a source's strict decoder
    /// refused the record because of it).
    TypeChanged,
    /// A null where the baseline does not allow one.
    NullValue,
    /// A field the baseline does not know.
    NewField,
    /// A field the baseline requires is absent.
    MissingField,
    /// A value outside the baseline's `enum` (or `const`).
    EnumValue,
    /// A value whose JSON type no longer fits the sink column created for the field.
    ColumnType,
}

impl DriftClass {
    /// Every class, in declaration order.
    pub const ALL: [DriftClass; 6] = [
        DriftClass::TypeChanged,
        DriftClass::NullValue,
        DriftClass::NewField,
        DriftClass::MissingField,
        DriftClass::EnumValue,
        DriftClass::ColumnType,
    ];

    /// The stored and printed name: `type_changed`, `null_value`, `new_field`,
    /// `missing_field`, `enum_value` or `column_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::TypeChanged => "type_changed",
            DriftClass::NullValue => "null_value",
            DriftClass::NewField => "new_field",
            DriftClass::MissingField => "missing_field",
            DriftClass::EnumValue => "enum_value",
            DriftClass::ColumnType => "column_type",
        }
    }
}

impl Named for DriftClass {
    const WHAT: &'static str = "drift class";
    const ALL: &'static [Self] = &DriftClass::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

// By name, not by declaration order: drift events are kept and listed sorted by (path,
// class), and that order was the names' order when classes were strings.
impl Ord for DriftClass {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for DriftClass {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// How a run or one of its streams ended (or that it has not yet): `RunReport::outcome`,
/// `StreamReport::outcome`, the stored `RunRecord::outcome`, and the `outcome` of alerts
/// and of the `dovetail_runs_total` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Started and not finished: a run's stored outcome until it ends, and a stream's
    /// report until the stream ends.
    #[default]
    Running,
    /// Everything selected was delivered.
    Succeeded,
    /// Something failed (the report's `error` says what).
    Failed,
    /// Stopped by a signal after committing what was delivered.
    Interrupted,
    /// A stream is paused (an outage or drift policy, or a pause still held): it did what
    /// its policy says, but its data is not current.
    Paused,
    /// Left `running` by a process that died; set when the pipeline's lock is taken again.
    Abandoned,
    /// The run could not start (the run lock is held, the state store is unavailable); only
    /// alerts say it, no run is recorded.
    NotStarted,
}

impl RunOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [RunOutcome; 7] = [
        RunOutcome::Running,
        RunOutcome::Succeeded,
        RunOutcome::Failed,
        RunOutcome::Interrupted,
        RunOutcome::Paused,
        RunOutcome::Abandoned,
        RunOutcome::NotStarted,
    ];

    /// The stored and printed name: `running`, `succeeded`, `failed`, `interrupted`,
    /// `paused`, `abandoned` or `not_started`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Paused => "paused",
            RunOutcome::Abandoned => "abandoned",
            RunOutcome::NotStarted => "not_started",
        }
    }
}

impl Named for RunOutcome {
    const WHAT: &'static str = "run outcome";
    const ALL: &'static [Self] = &RunOutcome::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Why a stream is paused ([`PausedStream::kind`](crate::state::PausedStream::kind)), which
/// decides what lifts the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseKind {
    /// Its remote was down under `on_unavailable = "pause"`; the next run probes it again.
    Unavailable,
    /// A drift policy paused it; it waits for `dovetail drift accept` or `dovetail resume`.
    Drift,
    /// Its API is rate-limited past the longest wait taken; runs skip it until the time the
    /// API allows requests again (or `dovetail resume`).
    RateLimited,
}

impl PauseKind {
    /// Every kind, in declaration order.
    pub const ALL: [PauseKind; 3] = [PauseKind::Unavailable, PauseKind::Drift, PauseKind::RateLimited];

    /// The stored and printed name: `unavailable`, `drift` or `rate_limited`.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseKind::Unavailable => "unavailable",
            PauseKind::Drift => "drift",
            PauseKind::RateLimited => "rate_limited",
        }
    }
}

impl Named for PauseKind {
    const WHAT: &'static str = "pause kind";
    const ALL: &'static [Self] = &PauseKind::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

// `pad`, not `write_str`: status tables and log lines align names with `{:<10}`.
macro_rules! display_and_parse {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                <$t as Named>::parse(s)
            }
        }
    )*};
}

display_and_parse!(DriftClass, RunOutcome, PauseKind);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant's serde name, `Display` and `as_str` are the string stored and printed
    /// before these were enums, and `FromStr` reads it back.
    fn pins<T>(table: &[(T, &str)])
    where
        T: Named + fmt::Display + fmt::Debug + PartialEq + serde::Serialize + serde::de::DeserializeOwned + FromStr,
        <T as FromStr>::Err: fmt::Debug,
    {
        assert_eq!(table.len(), T::ALL.len(), "the table lists every {}", T::WHAT);
        for (v, name) in table {
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(name), "{v:?}");
            assert_eq!(serde_json::from_value::<T>(serde_json::json!(name)).unwrap(), *v);
            assert_eq!((v.to_string(), v.name()), (name.to_string(), *name));
            assert_eq!(name.parse::<T>().unwrap(), *v);
        }
    }

    #[test]
    fn every_name_is_the_string_stored_and_printed() {
        pins(&[
            (DriftClass::TypeChanged, "type_changed"),
            (DriftClass::NullValue, "null_value"),
            (DriftClass::NewField, "new_field"),
            (DriftClass::MissingField, "missing_field"),
            (DriftClass::EnumValue, "enum_value"),
            (DriftClass::ColumnType, "column_type"),
        ]);
        pins(&[
            (RunOutcome::Running, "running"),
            (RunOutcome::Succeeded, "succeeded"),
            (RunOutcome::Failed, "failed"),
            (RunOutcome::Interrupted, "interrupted"),
            (RunOutcome::Paused, "paused"),
            (RunOutcome::Abandoned, "abandoned"),
            (RunOutcome::NotStarted, "not_started"),
        ]);
        pins(&[
            (PauseKind::Unavailable, "unavailable"),
            (PauseKind::Drift, "drift"),
            (PauseKind::RateLimited, "rate_limited"),
        ]);
        assert_eq!(format!("[{:<9}]", RunOutcome::Failed), "[failed   ]", "width and alignment apply");
    }

    #[test]
    fn drift_classes_sort_by_name() {
        let mut by_class = DriftClass::ALL.to_vec();
        by_class.sort();
        let mut by_name: Vec<&str> = DriftClass::ALL.iter().map(|c| c.as_str()).collect();
        by_name.sort_unstable();
        assert_eq!(by_class.iter().map(|c| c.as_str()).collect::<Vec<_>>(), by_name);
    }

    #[test]
    fn an_unknown_name_is_refused_saying_what_it_is_and_what_is_known() {
        let e = "type_change".parse::<DriftClass>().unwrap_err();
        assert_eq!((e.what, e.value.as_str()), ("drift class", "type_change"));
        assert_eq!(
            e.to_string(),
            "unknown drift class `type_change` (known: type_changed, null_value, new_field, missing_field, enum_value, column_type)"
        );
        let e = "done".parse::<RunOutcome>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown run outcome `done` (known: running, succeeded, failed, interrupted, paused, abandoned, not_started)"
        );
        let e = "Drift".parse::<PauseKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown pause kind `Drift` (known: unavailable, drift, rate_limited)",
            "names are exact"
        );
        let e = serde_json::from_value::<PauseKind>(serde_json::json!("outage")).unwrap_err();
        assert!(e.to_string().contains("unknown variant `outage`"), "{e}");
    }
}
