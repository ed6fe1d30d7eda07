//! Writes: Stripe-style idempotency keys, upserts, duplicate accounting.

mod common;

use common::{client, get, header, start};
use serde_json::{Value, json};

#[tokio::test]
async fn idempotency_keys_replay_or_refuse() {
    let vendor = start(1).await;
    let c = client();
    let url = format!("{}/v1/items", vendor.base_url());
    let post = |key: &'static str, body: Value| c.post(&url).header("idempotency-key", key).json(&body).send();

    let first = post("a", json!({"sku": "x", "qty": 2})).await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first, json!({"id": "obj_1", "sku": "x", "qty": 2}));

    let again = post("a", json!({"qty": 2, "sku": "x"})).await.unwrap();
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(header(again.headers(), "idempotent-replayed"), Some("true"));
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let conflict = post("a", json!({"sku": "y"})).await.unwrap();
    assert_eq!(conflict.status().as_u16(), 422);
    assert_eq!(conflict.json::<Value>().await.unwrap()["error"], "idempotency_key_reused");

    let other = post("b", json!({"sku": "z"})).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(other["id"], "obj_2");
    assert_eq!(vendor.created().len(), 2);
    let stats = vendor.stats();
    assert_eq!((stats.creations, stats.idempotent_replays, stats.duplicate_creations), (2, 1, 0));
    assert_eq!(stats.by_status[&201], 3);
    assert_eq!(stats.by_status[&422], 1);
}

#[tokio::test]
async fn duplicates_are_counted_by_external_id_or_body() {
    let vendor = start(1).await;
    let c = client();
    let url = format!("{}/v1/items", vendor.base_url());
    for body in [
        json!({"external_id": "e1", "v": 1}),
        json!({"external_id": "e1", "v": 2}),
        json!({"external_id": "e2", "v": 1}),
        json!({"v": 9}),
        json!({"v": 9}),
        json!({"v": 10}),
    ] {
        // No key: every POST creates.
        assert_eq!(c.post(&url).json(&body).send().await.unwrap().status().as_u16(), 201);
    }
    let stats = vendor.stats();
    assert_eq!((stats.creations, stats.duplicate_creations), (6, 2));
    let (_, _, listed) = get(&c, &format!("{}/v1/created", vendor.base_url())).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 6);
    assert_eq!(listed["data"], Value::Array(vendor.created()));
}

#[tokio::test]
async fn put_upserts_by_external_id() {
    let vendor = start(1).await;
    let c = client();
    let put = |ext: &str, body: Value| c.put(format!("{}/v1/items/{ext}", vendor.base_url())).json(&body).send();
    let a = put("ext-1", json!({"v": 1})).await.unwrap();
    assert_eq!(a.status().as_u16(), 200);
    let a: Value = a.json().await.unwrap();
    assert_eq!(a, json!({"id": "obj_1", "external_id": "ext-1", "v": 1}));
    let b: Value = put("ext-1", json!({"v": 2})).await.unwrap().json().await.unwrap();
    assert_eq!(b, json!({"id": "obj_1", "external_id": "ext-1", "v": 2}));
    put("ext%202", json!({})).await.unwrap();
    assert_eq!(vendor.created(), vec![b, json!({"id": "obj_2", "external_id": "ext 2"})]);
    let stats = vendor.stats();
    assert_eq!((stats.creations, stats.duplicate_creations), (2, 0));
    assert_eq!(stats.by_path["/v1/items/{id}"], 3);
}

#[tokio::test]
async fn bad_bodies_are_400() {
    let vendor = start(1).await;
    let c = client();
    let url = format!("{}/v1/items", vendor.base_url());
    for body in ["[1]", "not json", ""] {
        let resp = c.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body:?}");
    }
    assert!(vendor.created().is_empty());
    let resp = c.delete(format!("{url}/1")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}
