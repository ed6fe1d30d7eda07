//! The state conformance suite on core's in-memory store, and a check that the suite has a
//! check for every method of both state contracts.

use dovetail_core::testing::MemoryState;
use dovetail_testkit::state_conformance::{CHECKS, Group, Subject};

async fn memory() -> Subject {
    let store = MemoryState::default();
    let arm = store.clone();
    Subject::new(store).failing_commits(move |position| {
        arm.fail_commits_at_position(Some(position));
        async {}
    })
}

dovetail_testkit::state_conformance!(memory);

/// The delivery checks alone, on a store offered as delivery-only (how a new backend starts).
mod delivery_first {
    use super::*;

    async fn memory_delivery() -> Subject {
        let store = MemoryState::default();
        let arm = store.clone();
        Subject::delivery_only(store).failing_commits(move |position| {
            arm.fail_commits_at_position(Some(position));
            async {}
        })
    }

    dovetail_testkit::state_conformance!(memory_delivery, delivery_only);
}

/// The `async fn`s of `trait <name>` in core's state.rs, in order.
fn trait_methods(source: &str, name: &str) -> Vec<String> {
    let start = source.find(&format!("pub trait {name}")).unwrap_or_else(|| panic!("no trait {name} in state.rs"));
    let body = &source[start..];
    let end = body.find("\n}\n").expect("the trait's closing brace");
    body[..end]
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("async fn "))
        .map(|rest| rest.split(['(', '<']).next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn every_method_of_both_contracts_has_a_check() {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../core/src/state.rs")).unwrap();
    for (name, group, at_least) in [("DeliveryStore", Group::Delivery, 16), ("HistoryStore", Group::History, 11)] {
        let methods = trait_methods(&source, name);
        assert!(methods.len() >= at_least, "parsed too few methods of {name}: {methods:?}");
        for m in &methods {
            let checks: Vec<&str> =
                CHECKS.iter().filter(|c| c.group == group && c.covers.contains(&m.as_str())).map(|c| c.name).collect();
            assert!(!checks.is_empty(), "{name}::{m} has no check in the state conformance suite");
        }
        for c in CHECKS.iter().filter(|c| c.group == group) {
            for m in c.covers {
                let ok = methods.contains(&(*m).to_owned()) || (group == Group::History && *m == "commit");
                assert!(ok, "check {} claims {name}::{m}, which is not a method of it", c.name);
            }
        }
    }
}
