//! `/moved/...` redirects and the origin of every URL the vendor writes, for tests that a
//! client keeps its credentials to the host it was configured for.

use hyper::Uri;

use crate::config::{Faults, check_origin, check_redirect_status};
use crate::server::Reply;

/// The prefix that turns any request into a redirect to the path after it.
const PREFIX: &str = "/moved/";
/// `by_path` template of every redirected request.
pub(crate) const TEMPLATE: &str = "/moved/*";

/// Whether the request is answered with a redirect.
pub(crate) fn is_moved(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// `configured` without a trailing `/`, or the vendor's own base URL.
pub(crate) fn origin<'a>(configured: Option<&'a str>, own: &'a str) -> &'a str {
    configured.map_or(own, |o| o.trim_end_matches('/'))
}

/// The redirect for a `/moved/...` request: `Location` is the origin, the path after `/moved`, and the query.
pub(crate) fn reply(uri: &Uri, faults: &Faults, own: &str) -> Reply {
    // `set_faults` takes values built in code unchecked; say so instead of sending a broken redirect.
    let checked = check_redirect_status(faults.redirect_status)
        .and_then(|()| faults.redirect_origin.as_deref().map_or(Ok(()), check_origin));
    if let Err(why) = checked {
        return Reply::error(500, "invalid_fault", &why);
    }
    let rest = uri.path().strip_prefix(PREFIX.trim_end_matches('/')).unwrap_or("/");
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("{}{rest}{query}", origin(faults.redirect_origin.as_deref(), own));
    Reply::json(faults.redirect_status, serde_json::json!({ "location": location }).to_string())
        .header("location", location)
}
