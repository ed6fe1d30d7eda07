//! The properties HubSpot requires to create an object, checked before a batch is sent.
//!
//! The properties API has no "required" flag: what a create needs is in HubSpot's object
//! guides, so the defaults come from there — a contact needs one of `email`, `firstname`,
//! `lastname`; a company one of `name`, `domain`; a deal `dealname` and `dealstage`; a ticket
//! `subject` and `hs_pipeline_stage` (a deal's `pipeline` and a ticket's `hs_pipeline` fall
//! back to the default pipeline, so they are not required). The sink's `required` adds to
//! them (a custom object's required properties, a portal's own rules). Only an input that
//! may create is held to them — an upsert, whose HubSpot id the ledger does not know; an
//! update by a known id is not, as HubSpot does not enforce them there.

use dovetail_core::Error;
use serde_json::{Map, Value};

use crate::props::Kinds;

/// One requirement: every one of the names, or at least one of them.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Each(String),
    OneOf(Vec<String>),
}

/// What creating an object of one type requires.
#[derive(Debug, Clone, Default)]
pub(crate) struct Required(Vec<Rule>);

/// HubSpot's documented requirements for `object` (by name or its `0-N` type id).
fn defaults(object: &str) -> Vec<Rule> {
    let each = |names: &[&str]| names.iter().map(|n| Rule::Each((*n).to_owned())).collect();
    let one_of = |names: &[&str]| vec![Rule::OneOf(names.iter().map(|n| (*n).to_owned()).collect())];
    match object {
        "contacts" | "0-1" => one_of(&["email", "firstname", "lastname"]),
        "companies" | "0-2" => one_of(&["name", "domain"]),
        "deals" | "0-3" => each(&["dealname", "dealstage"]),
        "tickets" | "0-5" => each(&["subject", "hs_pipeline_stage"]),
        _ => Vec::new(),
    }
}

impl Required {
    /// HubSpot's defaults for `object` and the configured `extra` names. A default the
    /// properties API does not list (`kinds`) is left out: no input can carry it (a field
    /// that is no property is refused first), so requiring it would refuse every create.
    pub(crate) fn new(object: &str, extra: &[String], kinds: &Kinds) -> Required {
        let mut rules: Vec<Rule> = defaults(object)
            .into_iter()
            .filter_map(|rule| match rule {
                Rule::Each(n) => kinds.contains_key(&n).then_some(Rule::Each(n)),
                Rule::OneOf(names) => {
                    let listed: Vec<String> = names.into_iter().filter(|n| kinds.contains_key(n)).collect();
                    (!listed.is_empty()).then_some(Rule::OneOf(listed))
                }
            })
            .collect();
        for name in extra {
            let rule = Rule::Each(name.clone());
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        Required(rules)
    }

    /// A configured name that is no property of the object is a config error naming it.
    pub(crate) fn check_config(extra: &[String], kinds: &Kinds, object: &str) -> Result<(), Error> {
        match extra.iter().find(|n| !kinds.contains_key(*n)) {
            Some(n) => Err(Error::config(format!("`required`: `{n}` is no property of HubSpot's {object}"))),
            None => Ok(()),
        }
    }

    /// The first requirement the input's `properties` (as sent: null is `""`) fail, named.
    pub(crate) fn missing(&self, properties: &Map<String, Value>) -> Option<String> {
        let has = |n: &String| properties.get(n).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty());
        self.0.iter().find_map(|rule| match rule {
            Rule::Each(n) if !has(n) => Some(format!("`{n}`")),
            Rule::OneOf(names) if !names.iter().any(has) => {
                Some(format!("one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hubspots_documented_requirements_and_the_configured_ones_are_checked() {
        let kinds: Kinds = ["dealname", "dealstage", "amount", "email", "firstname", "lastname"]
            .into_iter()
            .map(|n| (n.to_owned(), crate::props::Kind::Text))
            .collect();
        let deals = Required::new("deals", &["amount".to_owned(), "dealname".to_owned()], &kinds);
        let props = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(deals.missing(&props(json!({ "dealname": "D", "dealstage": "s", "amount": "1" }))), None);
        assert_eq!(deals.missing(&props(json!({ "dealname": "D", "amount": "1" }))), Some("`dealstage`".into()));
        assert_eq!(
            deals.missing(&props(json!({ "dealname": "D", "dealstage": "s", "amount": "" }))),
            Some("`amount`".into())
        );
        let contacts = Required::new("contacts", &[], &kinds);
        assert_eq!(contacts.missing(&props(json!({ "lastname": "L" }))), None);
        assert_eq!(
            contacts.missing(&props(json!({ "phone": "1" }))),
            Some("one of `email`, `firstname`, `lastname`".into())
        );
        assert_eq!(Required::new("p_cars", &[], &kinds).missing(&Map::new()), None);
        // A portal (or a double) without `dealstage` cannot be held to it.
        let listed: Kinds = [("dealname".to_owned(), crate::props::Kind::Text)].into();
        assert_eq!(Required::new("deals", &[], &listed).missing(&props(json!({ "dealname": "D" }))), None);
    }
}
