//! Every HubSpot path the connector calls, in one table, under the date-based version
//! (`/crm/objects/2026-09/contacts`; the legacy `/crm/v3/` paths are not used).

use dovetail_http::encode_segment;

/// `GET`: one page of an object's records (`limit`, `after`, `properties`, `archived`).
pub(crate) fn list(version: &str, object: &str) -> String {
    format!("crm/objects/{}/{}", encode_segment(version), encode_segment(object))
}

/// `GET`: the properties an object has (name, type, field type, enumeration options).
pub(crate) fn properties(version: &str, object: &str) -> String {
    format!("crm/properties/{}/{}", encode_segment(version), encode_segment(object))
}

/// `GET`: one page of the account's owners (`limit`, `after`, `archived`).
pub(crate) fn owners(version: &str) -> String {
    format!("crm/owners/{}/", encode_segment(version))
}

/// `POST`: one page of a search (filters, one sort, `after`, at most 10,000 results a query).
pub(crate) fn search(version: &str, object: &str) -> String {
    format!("{}/search", list(version, object))
}

/// `GET`: the account's details (`timeZone`, `utcOffsetMilliseconds`, `portalId`).
pub(crate) fn account_info(version: &str) -> String {
    format!("account-info/{}/details", encode_segment(version))
}

/// `POST`: the associations of up to 1,000 `from` objects to objects of type `to` (`inputs`
/// of `id`, and `after` to go on with one object's next page).
pub(crate) fn associations_read(version: &str, from: &str, to: &str) -> String {
    format!("crm/associations/{}/{}/{}/batch/read", encode_segment(version), encode_segment(from), encode_segment(to))
}

/// `POST`: associate up to 100 pairs of objects (`inputs` of `from.id`, `to.id`, `types`).
pub(crate) fn associations_create(version: &str, from: &str, to: &str) -> String {
    associations_read(version, from, to).replace("/batch/read", "/batch/create")
}

/// `POST`: create or update up to 100 objects by a unique property (`inputs` of
/// `idProperty`, `id`, `properties`).
pub(crate) fn batch_upsert(version: &str, object: &str) -> String {
    format!("{}/batch/upsert", list(version, object))
}

/// `POST`: update up to 100 objects by HubSpot's id (`inputs` of `id`, `properties`).
pub(crate) fn batch_update(version: &str, object: &str) -> String {
    format!("{}/batch/update", list(version, object))
}
