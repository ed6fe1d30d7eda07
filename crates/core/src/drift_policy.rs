//! What a pipeline does with a record that drifted from its stream's baseline, per change
//! class: `[pipelines.NAME.drift]` in config, [`crate::PipelineBuilder::drift_policy`] in code.

use crate::names::DriftClass;

/// What happens to a record showing one class of drift.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DriftAction {
    /// The record goes on; the drift is stored, counted and logged at warn once per path and run.
    #[default]
    Warn,
    /// The record goes to dead letters (kind `drift`) with the drift as its reason; the rest
    /// of the page goes on, and the dead-letter threshold still applies.
    Quarantine,
    /// The stream stops at its last checkpoint (the page with the drift is neither written
    /// nor committed) and is marked paused until `dovetail drift accept` or `dovetail resume`.
    Pause,
}

impl DriftAction {
    /// `warn`, `quarantine` or `pause`.
    pub fn name(self) -> &'static str {
        match self {
            DriftAction::Warn => "warn",
            DriftAction::Quarantine => "quarantine",
            DriftAction::Pause => "pause",
        }
    }
}

/// The action per drift class. A class not set takes `default`, which is `warn` unless set:
/// drift is reported and the records go on, as before policies existed. A record that
/// drifts in several classes gets the strictest of their actions (pause > quarantine > warn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftPolicy {
    /// For every class not set below (default `warn`).
    pub default: Option<DriftAction>,
    /// A field the baseline does not know.
    pub new_field: Option<DriftAction>,
    /// A field the baseline requires is absent.
    pub missing_field: Option<DriftAction>,
    /// A field's JSON type is not one the baseline allows (also: a source's strict decoder
    /// refused the record because of it).
    pub type_changed: Option<DriftAction>,
    /// A null where the baseline does not allow one.
    pub null_value: Option<DriftAction>,
    /// A value outside the baseline's `enum` (or `const`).
    pub enum_value: Option<DriftAction>,
    /// A value whose JSON type no longer fits the sink column created for the field.
    pub column_type: Option<DriftAction>,
}

impl DriftPolicy {
    /// The same action for every class.
    pub fn all(action: DriftAction) -> Self {
        DriftPolicy { default: Some(action), ..Default::default() }
    }

    /// Set one class's action (the `default` is [`DriftPolicy::all`]'s).
    pub fn with(mut self, class: DriftClass, action: DriftAction) -> Self {
        *self.slot(class) = Some(action);
        self
    }

    /// The action for a class: its own, else `default`, else `warn`.
    pub fn action(&self, class: DriftClass) -> DriftAction {
        let set = *self.slot_ref(class);
        set.or(self.default).unwrap_or_default()
    }

    // One field per class (not a map) so the config keys are the class names, each with its
    // own doc in the JSON schema, and an unknown key is refused.
    fn slot(&mut self, class: DriftClass) -> &mut Option<DriftAction> {
        match class {
            DriftClass::NewField => &mut self.new_field,
            DriftClass::MissingField => &mut self.missing_field,
            DriftClass::TypeChanged => &mut self.type_changed,
            DriftClass::NullValue => &mut self.null_value,
            DriftClass::EnumValue => &mut self.enum_value,
            DriftClass::ColumnType => &mut self.column_type,
        }
    }

    fn slot_ref(&self, class: DriftClass) -> &Option<DriftAction> {
        match class {
            DriftClass::NewField => &self.new_field,
            DriftClass::MissingField => &self.missing_field,
            DriftClass::TypeChanged => &self.type_changed,
            DriftClass::NullValue => &self.null_value,
            DriftClass::EnumValue => &self.enum_value,
            DriftClass::ColumnType => &self.column_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_classes_take_the_default_and_the_default_is_warn() {
        assert_eq!(DriftPolicy::default().action(DriftClass::TypeChanged), DriftAction::Warn);
        let p: DriftPolicy =
            serde_json::from_value(serde_json::json!({"default": "quarantine", "new_field": "warn"})).unwrap();
        assert_eq!(
            (p.action(DriftClass::NewField), p.action(DriftClass::EnumValue)),
            (DriftAction::Warn, DriftAction::Quarantine)
        );
        assert!(DriftAction::Pause > DriftAction::Quarantine && DriftAction::Quarantine > DriftAction::Warn);
        let bad = serde_json::from_value::<DriftPolicy>(serde_json::json!({"type_change": "pause"}));
        assert!(bad.unwrap_err().to_string().contains("type_change"));
    }

    #[test]
    fn the_config_key_of_each_class_is_its_name() {
        for class in DriftClass::ALL {
            let p: DriftPolicy = serde_json::from_value(serde_json::json!({ class.as_str(): "pause" })).unwrap();
            assert_eq!(p.action(class), DriftAction::Pause, "{class}");
            assert_eq!(p, DriftPolicy::default().with(class, DriftAction::Pause), "{class}");
            let others = DriftClass::ALL.into_iter().filter(|c| *c != class);
            assert!(others.map(|c| p.action(c)).all(|a| a == DriftAction::Warn), "{class}");
        }
    }
}
