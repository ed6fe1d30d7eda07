//! The postgres sink on its own (no engine), on the testkit's throwaway PostgreSQL: tables
//! typed from the stream's schema, values read back exactly, a record that would pass the
//! 1,600-column limit dead-lettered, a value that no longer fits its column as drift, and an
//! existing table whose key differs refused naming table and keys, and connections the
//! server dropped replaced before the next batch.

use std::sync::Arc;

use dovetail_core::{
    Batch, BuildCx, ColumnDrift, Cx, DeleteMode, Key, Provenance, Record, Sink, SinkConnector, SinkStream,
};
use dovetail_postgres::{PostgresSink, PostgresSinkConfig};
use dovetail_testkit::pg;
use serde_json::{Value, json};

fn stream(name: &str, schema: Option<Value>) -> Arc<SinkStream> {
    Arc::new(SinkStream { name: name.into(), key_columns: vec!["id".into()], schema, delete_mode: DeleteMode::Keep })
}

/// A batch of records parsed from JSON text (numbers keep their digits), keyed by `id`.
fn batch(stream: &Arc<SinkStream>, rows: &[&str]) -> Batch {
    let prov = Arc::new(Provenance::default());
    let records: Vec<Record> = rows
        .iter()
        .map(|r| {
            let mut rec = Record::new(serde_json::from_str(r).unwrap(), prov.clone());
            rec.key = rec.data.get("id").map(|id| Key::from_parts(&[id]));
            rec
        })
        .collect();
    Batch::new(stream.clone(), records.into())
}

async fn client(db: &pg::TestDb) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn texts(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect()
}

#[tokio::test]
async fn a_schema_makes_typed_columns_and_values_come_back_exactly() {
    let Some(db) = pg::database("pg_sink_typed") else { return };
    let sink = PostgresSink::build(PostgresSinkConfig::new(db.url()), &BuildCx::default()).unwrap();
    let schema = json!({"type": "object", "properties": {
        "id": {"type": "integer"},
        "price": {"type": ["number", "null"]},
        "ratio": {"type": "number", "format": "double"},
        "at": {"type": "string", "format": "date-time"},
        "ok": {"type": "boolean"},
        "name": {"type": "string"},
        "doc": {"type": "object"}
    }});
    let s = stream("typed", Some(schema));
    sink.open(&s, &Cx::default()).await.unwrap();
    let c = client(&db).await;
    let types = texts(
        &c,
        "SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = 'typed' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(
        types,
        [
            "id bigint",
            "at timestamp with time zone",
            "doc jsonb",
            "name text",
            "ok boolean",
            "price numeric",
            "ratio double precision",
            "_synced_at timestamp with time zone"
        ]
    );
    let row = r#"{"id": 9223372036854775807, "price": 0.123456789012345678901234567891, "ratio": 0.5,
        "at": "2026-03-01T12:30:00.123456+02:00", "ok": true, "name": "n", "doc": {"a": [1, 2.50]}}"#;
    let report = sink.write(batch(&s, &[row]), &Cx::default()).await.unwrap();
    assert_eq!((report.written, report.rejected.len(), report.drift.len()), (1, 0, 0));
    let got = texts(
        &c,
        "SELECT concat_ws(' ', id, price, ratio, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), ok, name, doc) FROM typed",
    )
    .await;
    assert_eq!(
        got,
        [r#"9223372036854775807 0.123456789012345678901234567891 0.5 2026-03-01T10:30:00.123456 t n {"a": [1, 2.50]}"#]
    );

    // A string in the numeric column of a later record is drift, written as NULL under
    // `Write` and left out under `Refuse`; the other records are written.
    let rows = [r#"{"id": 1, "price": "cheap"}"#, r#"{"id": 2, "price": 3}"#];
    let report = sink.write(batch(&s, &rows), &Cx::default()).await.unwrap();
    assert_eq!((report.written, report.drift.len()), (2, 1));
    let e = &report.drift[0].1;
    assert_eq!((e.path.as_str(), e.expected.as_str(), e.observed.as_str()), ("/price", "number (numeric)", "string"));
    let rows = [r#"{"id": 3, "price": "dear"}"#, r#"{"id": 4, "price": 4}"#];
    let refused = batch(&s, &rows).with_column_drift(ColumnDrift::Refuse);
    let report = sink.write(refused, &Cx::default()).await.unwrap();
    assert_eq!((report.written, report.drift.len()), (1, 1));
    let ids =
        texts(&c, "SELECT string_agg(id || ':' || coalesce(price::text, 'null'), ' ' ORDER BY id) FROM typed").await;
    assert_eq!(ids, ["1:null 2:3 4:4 9223372036854775807:0.123456789012345678901234567891"]);
}

#[tokio::test]
async fn a_record_past_1600_columns_is_dead_lettered_naming_the_limit_and_adds_nothing() {
    let Some(db) = pg::database("pg_sink_wide") else { return };
    let sink = PostgresSink::build(PostgresSinkConfig::new(db.url()), &BuildCx::default()).unwrap();
    let s = stream("wide", None);
    let mut wide = serde_json::Map::new();
    wide.insert("id".into(), json!(1));
    for i in 0..1700 {
        wide.insert(format!("f{i}"), json!(i));
    }
    let wide = Value::Object(wide).to_string();
    let report = sink.write(batch(&s, &[&wide, r#"{"id": 2, "a": 1}"#]), &Cx::default()).await.unwrap();
    assert_eq!((report.written, report.rejected.len()), (1, 1));
    let why = report.rejected[0].1.to_string();
    assert!(why.contains("PostgreSQL allows at most 1600 columns in a table"), "{why}");
    let c = client(&db).await;
    let n = texts(&c, "SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'wide'").await;
    assert_eq!(n, ["3"], "id, a, _synced_at: the refused record added no column");
}

#[tokio::test]
async fn an_existing_table_with_another_key_is_refused_naming_table_and_keys() {
    let Some(db) = pg::database("pg_sink_other_key") else { return };
    let c = client(&db).await;
    c.batch_execute("CREATE TABLE public.keyed (code text PRIMARY KEY, id bigint)").await.unwrap();
    let sink = PostgresSink::build(PostgresSinkConfig::new(db.url()), &BuildCx::default()).unwrap();
    let err = sink.open(&stream("keyed", None), &Cx::default()).await.unwrap_err().to_string();
    assert!(err.contains("table `public.keyed` has primary key (code) but stream `keyed` has key (id)"), "{err}");
}

#[tokio::test]
async fn connections_the_server_dropped_are_replaced_before_the_next_batch() {
    let Some(db) = pg::database("pg_sink_reconnect") else { return };
    let sink = PostgresSink::build(PostgresSinkConfig::new(db.url()), &BuildCx::default()).unwrap();
    let s = stream("again", None);
    sink.write(batch(&s, &[r#"{"id": 1}"#]), &Cx::default()).await.unwrap();
    // What a server restart does to the pool: every connection of the sink is gone.
    let c = client(&db).await;
    let killed = texts(
        &c,
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity \
         WHERE application_name = 'dovetail' AND pid <> pg_backend_pid()",
    )
    .await;
    assert_ne!(killed, ["0"], "the sink had a connection to drop");
    let report = sink.write(batch(&s, &[r#"{"id": 2}"#]), &Cx::default()).await.unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(texts(&c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM again").await, ["1,2"]);
}

#[tokio::test]
async fn an_existing_table_keyed_by_uuid_with_a_date_is_written_and_deleted_from() {
    let Some(db) = pg::database("pg_sink_uuid") else { return };
    let c = client(&db).await;
    c.batch_execute("CREATE TABLE public.people (id uuid PRIMARY KEY, born date, name varchar(5))").await.unwrap();
    let sink = PostgresSink::build(PostgresSinkConfig::new(db.url()), &BuildCx::default()).unwrap();
    let s = Arc::new(SinkStream {
        name: "people".into(),
        key_columns: vec!["id".into()],
        schema: None,
        delete_mode: DeleteMode::Delete,
    });
    sink.open(&s, &Cx::default()).await.unwrap();
    let rows = [
        r#"{"id": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "born": "1990-02-28", "name": "ann"}"#,
        r#"{"id": "1a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "born": "someday", "name": "bob"}"#,
        r#"{"id": "2a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "born": null, "name": "too long"}"#,
        r#"{"id": "not a uuid", "name": "eve"}"#,
    ];
    let report = sink.write(batch(&s, &rows), &Cx::default()).await.unwrap();
    assert_eq!((report.written, report.drift.len(), report.rejected.len()), (3, 2, 1), "{report:?}");
    assert!(report.rejected[0].1.to_string().contains("key field `id` holds string (not a UUID)"));
    let got = texts(&c, "SELECT string_agg(concat_ws(' ', id, born, name), ', ' ORDER BY id) FROM people").await;
    assert_eq!(
        got,
        [
            "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9 1990-02-28 ann, 1a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9 bob, 2a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
        ]
    );
    let gone = Key::from_parts(&[&json!("1a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")]);
    assert_eq!(sink.delete(&s, &[gone], &Cx::default()).await.unwrap(), 1);
    assert_eq!(texts(&c, "SELECT count(*)::text FROM people").await, ["2"]);
}
