//! The postgres source from Rust, through the engine (`Pipeline::builder`): the example of
//! docs/connectors/postgres.md ("Source"), on the testkit's throwaway PostgreSQL.

use dovetail_core::testing::{MemorySink, MemoryState};
use dovetail_core::{BuildCx, Pipeline, RunOptions, SourceConnector, StreamOptions};
use dovetail_postgres::{PostgresSource, PostgresSourceConfig};
use dovetail_testkit::pg;

#[tokio::test]
async fn a_pipeline_built_in_rust_reads_changed_rows_once() {
    let Some(db) = pg::database("pg_source_pipeline") else { return };
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE customers (id bigint PRIMARY KEY, email text, updated_at timestamptz NOT NULL); \
             INSERT INTO customers SELECT i, 'c' || i || '@example.com', '2026-01-01T00:00:00Z' \
             FROM generate_series(1, 250) i;",
        )
        .await
        .unwrap();
    let config = PostgresSourceConfig::table(db.url(), "customers").with_cursor("updated_at");
    let source = PostgresSource::build(config, &BuildCx::default()).unwrap();
    let sink = MemorySink::default();
    let pipeline = Pipeline::builder("crm")
        .source(source)
        .sink(sink.clone())
        .state(MemoryState::default())
        .stream("customers", StreamOptions::default())
        .batch_size(100)
        .build()
        .unwrap();
    let first = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(first.streams["customers"].written, 250);
    client
        .batch_execute("UPDATE customers SET email = 'new@example.com', updated_at = now() WHERE id = 7")
        .await
        .unwrap();
    let again = pipeline.run(RunOptions::default()).await.unwrap();
    assert_eq!(again.streams["customers"].written, 1);
    let rows = sink.rows("customers");
    assert_eq!(rows.len(), 250);
    assert!(rows.iter().any(|r| r["id"] == 7 && r["email"] == "new@example.com"), "{rows:?}");
}
