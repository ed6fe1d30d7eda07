//! Drift detection, policy actions and accepting, on compiled baselines.

use super::*;
use serde_json::json;

#[test]
fn type_changes_new_and_missing_fields_are_one_event_each_with_a_count() {
    let baseline = crate::schema::infer([&json!({"id": 1, "price": 1.5, "name": "a", "owner": {"login": "x"}})]);
    let mut t = DriftTracker::new(baseline);
    let at = || "item 0".to_owned();
    let nulls = t.check(&json!({"id": 2, "price": 3, "name": null, "owner": {"login": "y"}}), &at).fresh;
    assert_eq!((nulls.len(), nulls[0].path.as_str(), nulls[0].change), (1, "/name", DriftClass::NullValue));
    let fresh = t.check(&json!({"id": 3, "price": "12.50", "title": "b", "owner": {"login": 7}}), &at).fresh;
    let got: Vec<(&str, DriftClass)> = fresh.iter().map(|e| (e.path.as_str(), e.change)).collect();
    assert_eq!(
        got,
        [
            ("/owner/login", DriftClass::TypeChanged),
            ("/price", DriftClass::TypeChanged),
            ("/title", DriftClass::NewField),
            ("/name", DriftClass::MissingField)
        ]
    );
    for _ in 0..9 {
        assert!(
            t.check(&json!({"id": 4, "price": "1.00", "name": "c", "owner": {"login": "z"}}), &at).fresh.is_empty()
        );
    }
    let price = t.events().into_iter().find(|e| e.path == "/price").unwrap();
    assert_eq!((price.count, price.expected.as_str(), price.observed.as_str()), (10, "number", "string"));
}

#[test]
fn accepting_every_event_silences_it() {
    let mut baseline =
        crate::schema::infer([&json!({"id": 1, "price": 1.5, "name": "a", "owner": {"login": "x"}, "tags": ["a"]})]);
    let drifted = json!({"id": 3, "price": "12.50", "title": "b", "owner": {"login": null}, "tags": [1]});
    let at = || "item 0".to_owned();
    let events = DriftTracker::new(baseline.clone()).check(&drifted, &at).fresh;
    assert_eq!(events.len(), 5, "{events:?}");
    for e in &events {
        assert!(accept(&mut baseline, &e.path, e.change, &e.observed), "{e:?} changed nothing");
    }
    assert!(DriftTracker::new(baseline.clone()).check(&drifted, &at).fresh.is_empty(), "{baseline}");
    // Still a baseline: the old shape passes, and a new drift is still caught.
    let mut t = DriftTracker::new(baseline.clone());
    assert!(
        t.check(&json!({"id": 2, "price": 2.5, "name": "b", "owner": {"login": "y"}, "tags": ["b"]}), &at)
            .fresh
            .is_empty()
    );
    assert_eq!(t.check(&json!({"id": true, "price": 1}), &at).fresh[0].path, "/id");
    assert!(!accept(&mut baseline, "/nowhere/deep", DriftClass::TypeChanged, "string"));
}

#[test]
fn a_value_outside_a_declared_enum_is_an_enum_value_event_per_value() {
    let baseline = json!({"type": "object", "properties": {
        "state": {"type": "string", "enum": ["open", "closed"]},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
        "n": {"type": "integer", "enum": [1, 2]}
    }});
    let mut t = DriftTracker::new(baseline.clone());
    let at = || "item 0".to_owned();
    assert!(t.check(&json!({"state": "open", "tags": ["a"], "n": 2.0}), &at).fresh.is_empty());
    let got = t.check(&json!({"state": "archived", "tags": ["b", "c"], "n": 1}), &at).fresh;
    let got: Vec<(&str, DriftClass, &str, &str)> =
        got.iter().map(|e| (e.path.as_str(), e.change, e.expected.as_str(), e.observed.as_str())).collect();
    assert_eq!(
        got,
        [
            ("/state", DriftClass::EnumValue, r#""open"|"closed""#, r#""archived""#),
            ("/tags/*", DriftClass::EnumValue, r#""a"|"b""#, r#""c""#)
        ]
    );
    t.check(&json!({"state": "archived"}), &at);
    t.check(&json!({"state": "merged"}), &at);
    let state: Vec<(String, u64)> =
        t.events().into_iter().filter(|e| e.path == "/state").map(|e| (e.observed, e.count)).collect();
    assert_eq!(state, [(r#""archived""#.to_owned(), 2), (r#""merged""#.to_owned(), 1)]);
    // Accepting takes each value into the baseline; other values still drift.
    let mut accepted = baseline.clone();
    for e in t.events() {
        assert!(accept(&mut accepted, &e.path, e.change, &e.observed), "{e:?}");
    }
    let mut t = DriftTracker::new(accepted);
    assert!(t.check(&json!({"state": "merged", "tags": ["c"]}), &at).fresh.is_empty());
    assert_eq!(t.check(&json!({"state": "draft"}), &at).fresh[0].observed, r#""draft""#);
    // A long value is cut short in the event.
    let long = "x".repeat(500);
    let e = &DriftTracker::new(baseline.clone()).check(&json!({ "state": long }), &at).fresh[0];
    assert!(e.observed.ends_with('…') && e.observed.chars().count() == SHOWN_MAX + 1, "{}", e.observed);
    // A value known only cut short (or `(other values)`) cannot join the list: accepting it
    // stops checking the field's values.
    let mut lifted = baseline.clone();
    assert!(accept(&mut lifted, &e.path, e.change, &e.observed));
    assert!(DriftTracker::new(lifted).check(&json!({"state": "anything"}), &at).fresh.is_empty());
}

#[test]
fn schemars_enums_are_checked_through_refs_and_one_of() {
    /// A state.
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    enum State {
        /// Open.
        Open,
        /// Closed.
        Closed,
    }
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    enum Plain {
        A,
        B,
    }
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Row {
        id: u64,
        state: State,
        previous: Option<State>,
        plain: Plain,
    }
    let baseline = schemars::schema_for!(Row).to_value();
    let mut t = DriftTracker::new(baseline.clone());
    let at = || "item 0".to_owned();
    let ok = json!({"id": 1, "state": "Open", "previous": null, "plain": "A"});
    assert!(t.check(&ok, &at).fresh.is_empty(), "{baseline}");
    let bad = json!({"id": 1, "state": "Gone", "previous": "Reopened", "plain": "C"});
    let paths: Vec<String> = t.check(&bad, &at).fresh.iter().map(|e| format!("{} {}", e.path, e.change)).collect();
    assert_eq!(paths, ["/plain enum_value", "/previous enum_value", "/state enum_value"], "{baseline}");
    let mut accepted = baseline;
    for e in t.events() {
        assert!(accept(&mut accepted, &e.path, e.change, &e.observed), "{e:?}");
    }
    assert!(DriftTracker::new(accepted).check(&bad, &at).fresh.is_empty());
}

#[test]
fn a_record_gets_the_strictest_action_of_its_drifts() {
    let baseline = crate::schema::infer([&json!({"id": 1, "name": "a", "price": 2})]);
    let policy = DriftPolicy::default()
        .with(DriftClass::NewField, DriftAction::Quarantine)
        .with(DriftClass::TypeChanged, DriftAction::Pause);
    let mut t = DriftTracker::with_policy(baseline, policy);
    let at = || "item 0".to_owned();
    let c = t.check(&json!({"id": 1, "name": null, "price": 2}), &at);
    assert_eq!((c.action, c.cause.is_none()), (DriftAction::Warn, true));
    let c = t.check(&json!({"id": 1, "name": "a", "price": 2, "extra": 1}), &at);
    assert_eq!((c.action, c.cause.unwrap().path.as_str()), (DriftAction::Quarantine, "/extra"));
    let c = t.check(&json!({"id": 1, "name": "a", "price": "2", "extra": 1}), &at);
    assert_eq!(c.action, DriftAction::Pause);
    assert_eq!(c.cause.unwrap().describe(), "/price: type_changed (expected integer, observed string)");
    // Already seen: no fresh events, the same action.
    let c = t.check(&json!({"id": 1, "name": "a", "price": "3"}), &at);
    assert_eq!((c.fresh.len(), c.action), (0, DriftAction::Pause));
}

#[test]
fn a_coercion_is_drift_until_the_baseline_allows_what_the_vendor_sent() {
    let mut baseline = json!({"type": "object", "required": ["id", "tags"], "properties": {
        "id": {"type": "integer"}, "tags": {"type": "array"}, "labels": {"type": "array"}
    }});
    let coercion = |path: &str, change: DriftClass, observed: &str| DriftEvent {
        path: path.into(),
        change,
        expected: "array".into(),
        observed: observed.into(),
        count: 1,
        first_seen: "t".into(),
        first_at: "item 0".into(),
    };
    let null_tags = coercion("/tags", DriftClass::NullValue, "null (read as [])");
    let absent_labels = coercion("/labels", DriftClass::MissingField, "absent (read as [])");
    let mut t = DriftTracker::with_policy(baseline.clone(), DriftPolicy::all(DriftAction::Quarantine));
    let c = t.record_coercion(&null_tags);
    assert_eq!((c.fresh.len(), c.action), (1, DriftAction::Quarantine));
    assert!(t.record_coercion(&absent_labels).fresh.is_empty(), "an optional field may be absent");
    assert!(t.record_coercion(&null_tags).fresh.is_empty(), "counted once per run");
    assert_eq!(t.events()[0].count, 2);
    assert!(accept(&mut baseline, &null_tags.path, null_tags.change, &null_tags.observed));
    assert_eq!(baseline["properties"]["tags"]["type"], json!(["array", "null"]));
    let c = DriftTracker::with_policy(baseline, DriftPolicy::all(DriftAction::Pause)).record_coercion(&null_tags);
    assert_eq!((c.fresh.len(), c.action), (0, DriftAction::Warn));
}
