//! Test controls, shared by [`crate::VendorHandle`] and the `/_control/...` endpoints.
//!
//! Never subject to faults, auth, rate limits or the down switch, and never counted.

use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::config::Faults;
use crate::server::{Reply, Shared, read_body};
use crate::stats::Stats;

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        self.lock().rec.stats.clone()
    }

    pub(crate) fn reset_stats(&self) {
        self.lock().rec.reset();
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub(crate) fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    pub(crate) fn revoke_refresh_tokens(&self) {
        self.lock().auth.revoke();
    }

    pub(crate) fn touch(&self, ids: &[u64]) {
        self.lock().data.touch(ids);
    }

    pub(crate) fn add_records(&self, n: u64) {
        self.lock().data.add(n);
    }

    pub(crate) fn records_held(&self) -> u64 {
        self.lock().data.len()
    }

    pub(crate) fn created(&self) -> Vec<serde_json::Value> {
        self.lock().created.objects.clone()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Down {
    down: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Touch {
    ids: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Add {
    n: u64,
}

fn ok() -> Reply {
    Reply::json(200, r#"{"ok":true}"#)
}

async fn parse<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Reply> {
    let body = read_body(req.into_body()).await.ok_or_else(|| Reply::error(413, "too_large", "body too large"))?;
    serde_json::from_slice(&body).map_err(|e| Reply::error(400, "invalid_request", &e.to_string()))
}

/// Serves `GET /_stats` and `/_control/...`.
pub(crate) async fn handle(shared: &Shared, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let result = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/_stats") => Ok(Reply::json(200, json!(shared.stats()).to_string())),
        (Method::POST, "/_control/reset_stats") => Ok({
            shared.reset_stats();
            ok()
        }),
        (Method::GET, "/_control/faults") => Ok(Reply::json(200, json!(shared.faults()).to_string())),
        (Method::POST, "/_control/faults") => parse::<Faults>(req).await.map(|f| {
            shared.set_faults(f);
            ok()
        }),
        (Method::POST, "/_control/down") => parse::<Down>(req).await.map(|d| {
            shared.set_down(d.down);
            ok()
        }),
        (Method::POST, "/_control/revoke_refresh_tokens") => Ok({
            shared.revoke_refresh_tokens();
            ok()
        }),
        (Method::POST, "/_control/touch") => parse::<Touch>(req).await.map(|t| {
            shared.touch(&t.ids);
            ok()
        }),
        (Method::POST, "/_control/add_records") => parse::<Add>(req).await.map(|a| {
            shared.add_records(a.n);
            ok()
        }),
        (Method::GET, "/_control/created") => Ok(Reply::json(200, json!({ "data": shared.created() }).to_string())),
        (Method::POST, "/_control/shutdown") => Ok({
            shared.shutdown.cancel();
            ok()
        }),
        _ => Err(Reply::error(404, "not_found", "no such control endpoint")),
    };
    result.unwrap_or_else(|e| e)
}
