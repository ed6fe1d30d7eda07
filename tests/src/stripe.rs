//! A Stripe double on wiremock for the e2e tests: list endpoints as Stripe pages them
//! (newest first by `created`, then id; `limit`, `starting_after`, `has_more`,
//! `created[gte]` / `created[lt]`), `GET /v1/account` (with `Stripe-Account`, the connected
//! account), objects that appear while a run pages, `type` on `/v1/events`, and pipeline
//! configs around it. For the
//! sink: `POST /v1/{object}` creates under an `Idempotency-Key` as Stripe does (a repeat of
//! the key and parameters answers the stored response with `Idempotent-Replayed: true`;
//! other parameters get `400 idempotency_error`), can drop responses after creating, hold
//! one create's answer back until the harness kills the run (`hold_create`), forget every
//! key (`expire_keys`), and `POST /v1/{object}/{id}` updates. Its state lives in the test
//! process, so it outlives each `dovetail` run (the crash harness serves it from a runtime
//! of its own: tests/src/crash/stripe.rs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The key the configs read from `STRIPE_API_KEY`; no output may contain it.
pub const KEY: &str = "sk_test_e2e_double_key_not_real_0123456789";

/// Objects by list path (`/v1/customers`), and what to add once a path served n pages.
#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<String, Vec<Value>>,
    /// (path, after this many pages of it were served, the object then created).
    later: Vec<(String, usize, Value)>,
    served: BTreeMap<String, usize>,
    /// (path, status, `Stripe-Should-Retry` value, answers left): failures served first.
    faults: Vec<(String, u16, Option<String>, usize)>,
    /// Idempotency key → (form body, stored status, stored response).
    idem: BTreeMap<String, (String, u16, Value)>,
    /// Creates whose response is held back past the client's timeout, still to come.
    drop_creates: usize,
    /// Creates still to come that create the object yet answer (and store under their key)
    /// a 500, with this `Stripe-Should-Retry`.
    fail_creates: (usize, Option<String>),
    /// Searches still to come that find nothing (Stripe's search lags its writes).
    search_lag: usize,
    /// Creates still to come answered `409` (the key in flight) before they run.
    conflicts: usize,
    /// Every write's response is held back past the client's timeout (after the write is
    /// done): a connection lost for good, retries and replays included.
    lose_responses: bool,
    /// What the sink did: objects created, answers replayed, updates (path, params).
    creations: usize,
    replays: usize,
    /// Each object created: its list path and the `Idempotency-Key` it was created under.
    create_log: Vec<(String, Option<String>)>,
    /// Creates still to come until the one whose answer is held back ([`HOLD_DELAY`]).
    hold: Option<usize>,
    /// The object of the held create, once it was made.
    held: Option<Value>,
    /// Since a create was held, until `release`: every write is left unanswered, not acted on.
    stalled: bool,
    /// Searches answered.
    searches: usize,
    updates: Vec<(String, Value)>,
    next_id: u64,
}

/// How long a dropped create's response is held back: longer than the configs' timeout.
pub const DROP_DELAY: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a held create's answer is held back: far longer than the harness takes to kill
/// the run waiting for it.
pub const HOLD_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

/// A form body as Stripe reads it: `a=1&metadata[k]=v` → `{"a": "1", "metadata": {"k": "v"}}`.
pub fn form_params(body: &str) -> Value {
    let url = reqwest::Url::parse(&format!("http://x/?{body}")).expect("a form body");
    let mut out = serde_json::Map::new();
    for (k, v) in url.query_pairs() {
        match k.split_once('[') {
            Some((outer, inner)) => {
                let inner = inner.trim_end_matches(']').to_owned();
                let slot = out.entry(outer.to_owned()).or_insert_with(|| json!({}));
                slot[inner] = Value::String(v.into_owned());
            }
            None => {
                out.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    Value::Object(out)
}

struct Writes(Arc<Mutex<Store>>);

impl Respond for Writes {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let answer = self.answer(req);
        match self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).lose_responses {
            true => answer.set_delay(DROP_DELAY),
            false => answer,
        }
    }
}

impl Writes {
    fn answer(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_owned();
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let params = form_params(&body);
        let mut store = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if store.stalled {
            return ResponseTemplate::new(503).set_delay(HOLD_DELAY);
        }
        store.next_id += 1;
        let request_id = format!("req_w{}", store.next_id);
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let ["v1", object, id] = parts[..] {
            let list = format!("/v1/{object}");
            let Some(o) = store.objects.get_mut(&list).and_then(|l| l.iter_mut().find(|o| o["id"] == id)) else {
                return ResponseTemplate::new(404)
                    .insert_header("request-id", request_id.as_str())
                    .set_body_json(json!({ "error": { "type": "invalid_request_error", "code": "resource_missing",
                        "message": format!("No such object: '{id}'") } }));
            };
            for (k, v) in params.as_object().into_iter().flatten() {
                o[k] = v.clone();
            }
            let answer = o.clone();
            store.updates.push((path.clone(), params));
            return ResponseTemplate::new(200).insert_header("request-id", request_id.as_str()).set_body_json(answer);
        }
        let key = req.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(k) = &key
            && let Some((stored_body, status, answer)) = store.idem.get(k).cloned()
        {
            if stored_body != body {
                return ResponseTemplate::new(400).insert_header("request-id", request_id.as_str()).set_body_json(
                    json!({ "error": { "type": "idempotency_error", "message": format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request.") } }),
                );
            }
            store.replays += 1;
            return ResponseTemplate::new(status)
                .insert_header("request-id", request_id.as_str())
                .insert_header("idempotent-replayed", "true")
                .set_body_json(answer);
        }
        if store.conflicts > 0 {
            store.conflicts -= 1;
            return ResponseTemplate::new(409).insert_header("request-id", request_id.as_str()).set_body_json(
                json!({ "error": { "type": "idempotency_error", "message": "There is currently another in-progress request using this Stripe-Idempotency-Key." } }),
            );
        }
        let prefix = match parts.get(1) {
            Some(&"customers") => "cus",
            Some(&"products") => "prod",
            Some(&"prices") => "price",
            _ => "ii",
        };
        // A client-chosen id (products): taken, unless an object has it already.
        let id = match params["id"].as_str() {
            Some(chosen) if store.objects.get(&path).is_some_and(|l| l.iter().any(|o| o["id"] == chosen)) => {
                return ResponseTemplate::new(400).insert_header("request-id", request_id.as_str()).set_body_json(
                    json!({ "error": { "type": "invalid_request_error", "code": "resource_already_exists",
                        "message": format!("Object already exists: '{chosen}'") } }),
                );
            }
            Some(chosen) => chosen.to_owned(),
            None => format!("{prefix}_{:06}", store.next_id),
        };
        let mut object = params.clone();
        object["id"] = json!(id);
        object["created"] = json!(now());
        store.objects.entry(path.clone()).or_default().push(object.clone());
        store.creations += 1;
        store.create_log.push((path.clone(), key.clone()));
        let held = match store.hold {
            Some(1) => {
                store.hold = None;
                store.held = Some(object.clone());
                store.stalled = true;
                true
            }
            Some(n) => {
                store.hold = Some(n - 1);
                false
            }
            None => false,
        };
        if store.fail_creates.0 > 0 {
            store.fail_creates.0 -= 1;
            let error = json!({ "error": { "type": "api_error", "message": "An unknown error occurred" } });
            let retry = store.fail_creates.1.clone();
            if let Some(k) = key {
                store.idem.insert(k, (body, 500, error.clone()));
            }
            let mut t =
                ResponseTemplate::new(500).insert_header("request-id", request_id.as_str()).set_body_json(error);
            if let Some(v) = retry {
                t = t.insert_header("stripe-should-retry", v.as_str());
            }
            return t;
        }
        if let Some(k) = key {
            store.idem.insert(k, (body, 200, object.clone()));
        }
        let mut t = ResponseTemplate::new(200).insert_header("request-id", request_id.as_str()).set_body_json(object);
        if held {
            return t.set_delay(HOLD_DELAY);
        }
        if store.drop_creates > 0 {
            store.drop_creates -= 1;
            t = t.set_delay(DROP_DELAY);
        }
        t
    }
}

/// The double: a wiremock server answering like Stripe's list API.
#[derive(Debug)]
pub struct StripeDouble {
    /// The server (its `received_requests` are every request the runs sent).
    pub server: MockServer,
    store: Arc<Mutex<Store>>,
}

struct Lists(Arc<Mutex<Store>>);

impl Respond for Lists {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_owned();
        let q: Vec<(String, String)> = req.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let num = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        if path == "/v1/account" {
            let id = req.headers.get("stripe-account").and_then(|v| v.to_str().ok()).unwrap_or("acct_platform");
            return ResponseTemplate::new(200).set_body_json(
                json!({ "id": id, "object": "account", "settings": { "dashboard": { "display_name": "Double Ltd" } } }),
            );
        }
        let mut store = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let ["", "v1", object, id] = path.split('/').collect::<Vec<_>>()[..]
            && id != "search"
        {
            let list = format!("/v1/{object}");
            let found = store.objects.get(&list).and_then(|l| l.iter().find(|o| o["id"] == id)).cloned();
            return match found {
                Some(o) => ResponseTemplate::new(200).set_body_json(o),
                None => ResponseTemplate::new(404).set_body_json(json!({ "error": {
                    "type": "invalid_request_error", "code": "resource_missing", "message": format!("No such object: '{id}'") } })),
            };
        }
        if let Some(list) = path.strip_suffix("/search") {
            // Only `metadata['k']:'v'` queries, which is what the sink sends.
            let query = get("query").unwrap_or_default();
            store.searches += 1;
            if store.search_lag > 0 {
                store.search_lag -= 1;
                return ResponseTemplate::new(200)
                    .set_body_json(json!({ "object": "search_result", "url": path, "has_more": false, "data": [] }));
            }
            let found: Vec<Value> = query
                .strip_prefix("metadata['")
                .and_then(|q| q.split_once("']:'"))
                .map(|(k, v)| {
                    let v = v.strip_suffix('\'').unwrap_or(v).replace("\\'", "'").replace("\\\\", "\\");
                    let all = store.objects.get(list).cloned().unwrap_or_default();
                    all.into_iter().filter(|o| o["metadata"][k].as_str() == Some(v.as_str())).collect()
                })
                .unwrap_or_default();
            return ResponseTemplate::new(200)
                .set_body_json(json!({ "object": "search_result", "url": path, "has_more": false, "data": found }));
        }
        if let Some(f) = store.faults.iter_mut().find(|f| f.0 == path && f.3 > 0) {
            f.3 -= 1;
            let mut t = ResponseTemplate::new(f.1).set_body_json(json!({ "error": {
                "type": "api_error", "message": "An unknown error occurred" } }));
            if let Some(v) = &f.2 {
                t = t.insert_header("stripe-should-retry", v.as_str());
            }
            return t;
        }
        let mut all: Vec<Value> = store.objects.get(&path).cloned().unwrap_or_default();
        if let Some(acct) = req.headers.get("stripe-account").and_then(|v| v.to_str().ok()) {
            all.retain(|o| o["_account"].as_str() == Some(acct));
        }
        if let Some(t) = get("type") {
            all.retain(|o| o["type"] == t.as_str());
        }
        // `types[]`: exact types, or a prefix with `.*` (`customer.*`).
        let types: Vec<&str> = q.iter().filter(|(k, _)| k == "types[]").map(|(_, v)| v.as_str()).collect();
        if !types.is_empty() {
            all.retain(|o| {
                let t = o["type"].as_str().unwrap_or_default();
                types.iter().any(|w| w.strip_suffix('*').map_or(t == *w, |prefix| t.starts_with(prefix)))
            });
        }
        all.retain(|o| {
            let c = o["created"].as_i64().unwrap_or(0);
            num("created[gte]").is_none_or(|g| c >= g) && num("created[lt]").is_none_or(|l| c < l)
        });
        all.sort_by(|a, b| {
            let key = |o: &Value| (o["created"].as_i64().unwrap_or(0), o["id"].as_str().unwrap_or("").to_owned());
            key(b).cmp(&key(a))
        });
        let start = match get("starting_after") {
            None => 0,
            Some(id) => match all.iter().position(|o| o["id"] == id.as_str()) {
                Some(i) => i + 1,
                None => {
                    return ResponseTemplate::new(400).set_body_json(json!({ "error": {
                        "code": "resource_missing", "param": "starting_after", "type": "invalid_request_error",
                        "message": format!("No such object: '{id}'") } }));
                }
            },
        };
        let limit = num("limit").unwrap_or(10).clamp(1, 100) as usize;
        let data: Vec<Value> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(|o| {
                let mut o = o.clone();
                o.as_object_mut().map(|m| m.remove("_account"));
                o
            })
            .collect();
        let has_more = all.len() > start + limit;
        let n = store.served.entry(path.clone()).or_default();
        *n += 1;
        let n = *n;
        let due: Vec<Value> =
            store.later.iter().filter(|(p, at, _)| *p == path && *at == n).map(|(_, _, o)| o.clone()).collect();
        store.objects.entry(path.clone()).or_default().extend(due);
        ResponseTemplate::new(200)
            .insert_header("request-id", format!("req_{n}").as_str())
            .set_body_json(json!({ "object": "list", "url": path, "has_more": has_more, "data": data }))
    }
}

impl StripeDouble {
    /// A double holding nothing yet.
    pub async fn start() -> StripeDouble {
        let server = MockServer::start().await;
        let store = Arc::new(Mutex::new(Store::default()));
        Mock::given(wiremock::matchers::method("GET")).respond_with(Lists(store.clone())).mount(&server).await;
        Mock::given(wiremock::matchers::method("POST")).respond_with(Writes(store.clone())).mount(&server).await;
        StripeDouble { server, store }
    }

    /// The base URL to configure.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Adds objects to the list at `path` (`/v1/customers`); an `_account` field puts one
    /// in that connected account.
    pub fn add(&self, path: &str, objects: impl IntoIterator<Item = Value>) {
        let mut s = self.store.lock().unwrap();
        s.objects.entry(path.to_owned()).or_default().extend(objects);
    }

    /// Replaces the object at `path` with `object`'s id by `object` (a deleted one: `{"id":
    /// …, "deleted": true}`).
    pub fn replace(&self, path: &str, object: Value) {
        let mut s = self.store.lock().unwrap();
        let list = s.objects.entry(path.to_owned()).or_default();
        list.retain(|o| o["id"] != object["id"]);
        list.push(object);
    }

    /// Deletes the object `id` at `path` for good, as Stripe does for a deleted customer: it is
    /// no longer listed, and a page asked `starting_after` it is refused (`resource_missing`).
    pub fn remove(&self, path: &str, id: &str) {
        let mut s = self.store.lock().unwrap();
        s.objects.entry(path.to_owned()).or_default().retain(|o| o["id"] != id);
    }

    /// Creates `object` at `path` right after the double served the `pages`-th page of it.
    pub fn add_after(&self, path: &str, pages: usize, object: Value) {
        self.store.lock().unwrap().later.push((path.to_owned(), pages, object));
    }

    /// Answers the next `times` requests to `path` with `status` (and `Stripe-Should-Retry:
    /// should_retry` when given) before listing again.
    pub fn fail(&self, path: &str, status: u16, should_retry: Option<&str>, times: usize) {
        self.store.lock().unwrap().faults.push((path.to_owned(), status, should_retry.map(str::to_owned), times));
    }

    /// Holds back the responses of the next `n` creates (made, stored under their key) past
    /// the client's timeout, as a connection lost after Stripe created the object.
    pub fn drop_creates(&self, n: usize) {
        self.store.lock().unwrap().drop_creates = n;
    }

    /// The next `n` creates create their object but answer `500` (stored under their key, as
    /// Stripe stores it), with `Stripe-Should-Retry: should_retry` when given.
    pub fn fail_creates(&self, n: usize, should_retry: Option<&str>) {
        self.store.lock().unwrap().fail_creates = (n, should_retry.map(str::to_owned));
    }

    /// While `lose` holds, every write is done but its response (a replay's too) held back
    /// past the client's timeout: the connection is lost after Stripe acted.
    pub fn lose_responses(&self, lose: bool) {
        self.store.lock().unwrap().lose_responses = lose;
    }

    /// The next `n` creates are answered `409` (the same key in flight) before they run.
    pub fn conflict_creates(&self, n: usize) {
        self.store.lock().unwrap().conflicts = n;
    }

    /// The next `n` searches find nothing, as Stripe's search does for up to a minute after a write.
    pub fn search_lag(&self, n: usize) {
        self.store.lock().unwrap().search_lag = n;
    }

    /// Forgets every idempotency key, as Stripe does 24 hours after a key's first use.
    pub fn expire_keys(&self) {
        self.store.lock().unwrap().idem.clear();
    }

    /// The `n`-th create from now (counting objects made, not replays) makes its object and
    /// stores its answer under its key, then holds the answer back ([`HOLD_DELAY`]): the run
    /// is to be killed meanwhile, between its pending create and the answer. [`held`] says
    /// when. Every write after it is stalled — left unanswered, not acted on — until
    /// [`release`], so a run's other streams create nothing more before the kill lands.
    ///
    /// [`held`]: StripeDouble::held
    /// [`release`]: StripeDouble::release
    pub fn hold_create(&self, n: usize) {
        let mut s = self.store.lock().unwrap();
        s.hold = Some(n.max(1));
        s.held = None;
        s.stalled = false;
    }

    /// Writes are answered again after a held create (the run that sent them was killed).
    pub fn release(&self) {
        self.store.lock().unwrap().stalled = false;
    }

    /// The object whose create's answer is held back, once it was made (taken: the next
    /// call says `None` until another is held).
    pub fn held(&self) -> Option<Value> {
        self.store.lock().unwrap().held.take()
    }

    /// Each object created so far: its list path (`/v1/customers`) and the
    /// `Idempotency-Key` it was created under.
    pub fn create_log(&self) -> Vec<(String, Option<String>)> {
        self.store.lock().unwrap().create_log.clone()
    }

    /// Searches answered so far.
    pub fn searches(&self) -> usize {
        self.store.lock().unwrap().searches
    }

    /// Objects created, creates answered from the idempotency store, and updates (path,
    /// params), so far.
    pub fn writes(&self) -> (usize, usize, Vec<(String, Value)>) {
        let s = self.store.lock().unwrap();
        (s.creations, s.replays, s.updates.clone())
    }

    /// The objects at `path` (`/v1/customers`), in creation order.
    pub fn objects(&self, path: &str) -> Vec<Value> {
        self.store.lock().unwrap().objects.get(path).cloned().unwrap_or_default()
    }

    /// The query pairs of every list request to `path`, in order.
    pub async fn queries(&self, path: &str) -> Vec<Vec<(String, String)>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == path)
            .map(|r| r.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .collect()
    }
}

/// `n` customers `cus_<first>…`, created `created(i)` seconds after the epoch.
pub fn customers(ids: impl IntoIterator<Item = u32>, created: impl Fn(u32) -> i64) -> Vec<Value> {
    ids.into_iter()
        .map(|i| {
            json!({ "id": format!("cus_{i:04}"), "object": "customer", "created": created(i),
                "email": format!("c{i}@example.com"), "livemode": false, "metadata": {} })
        })
        .collect()
}

/// Now, epoch seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Pipeline `stripe`: the source block's `extra` lines, into `out.db`; `pipeline` lines in
/// `[pipelines.stripe]`.
pub fn config(base_url: &str, extra: &str, pipeline: &str) -> String {
    format!(
        r#"[pipelines.stripe]
{pipeline}

[pipelines.stripe.source]
kind = "stripe"
api_key = "${{STRIPE_API_KEY}}"
base_url = "{base_url}"
http = {{ retry = {{ base_delay_ms = 1, max_delay_ms = 5, max_elapsed_ms = 3000 }} }}
{extra}

[pipelines.stripe.sink]
kind = "sqlite"
path = "out.db"
"#
    )
}
