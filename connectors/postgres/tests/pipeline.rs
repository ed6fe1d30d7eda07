//! The postgres sink from Rust, through the engine (`Pipeline::builder`): the example of
//! docs/connectors/postgres.md, on the testkit's throwaway PostgreSQL.

use dovetail_core::testing::{MemorySource, MemoryState};
use dovetail_core::{BuildCx, Pipeline, RunOptions, SinkConnector, StreamOptions};
use dovetail_postgres::{PostgresSink, PostgresSinkConfig};
use dovetail_testkit::pg;
use serde_json::json;

#[tokio::test]
async fn a_pipeline_built_in_rust_writes_and_an_unchanged_rerun_writes_nothing() {
    let Some(db) = pg::database("pg_sink_pipeline") else { return };
    let mut config = PostgresSinkConfig::new(db.url());
    config.schema = "crm".into();
    config.table_prefix = Some("hubspot_".into());
    let sink = PostgresSink::build(config, &BuildCx::default()).unwrap();
    let records = (1..=250).map(|i| json!({"id": i, "email": format!("c{i}@example.com")})).collect();
    let pipeline = Pipeline::builder("crm")
        .source(MemorySource::new("contacts", &["id"], records))
        .sink(sink)
        .state(MemoryState::default())
        .stream("contacts", StreamOptions::default())
        .batch_size(100)
        .build()
        .unwrap();
    let first = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(first.streams["contacts"].written, 250);
    let again = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(again.streams["contacts"].written, 0);
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let n: i64 = client.query_one("SELECT count(*) FROM crm.hubspot_contacts", &[]).await.unwrap().get(0);
    assert_eq!(n, 250);
}
