//! TLS against a TLS server: a cluster of the test's own with `ssl=on`, a CA and certificate
//! made at test time (for `localhost` only), and a `pg_hba.conf` letting TCP clients in over
//! TLS only. Each `sslmode` does what libpq's does.

use dovetail_core::ErrorKind;
use dovetail_state_pg::{PgState, PgTarget};
use dovetail_testkit::pg;

struct Tls {
    cluster: pg::Cluster,
    db: pg::TestDb,
    ca: std::path::PathBuf,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca);
    }
}

fn tls(test: &str) -> Option<Tls> {
    let certs = pg::test_certs(&["localhost"]);
    let cluster = pg::Cluster::start(test, &pg::ClusterOptions::tls(&certs.cert_pem, &certs.key_pem, true))?;
    let db = cluster.database(test);
    let ca = std::env::temp_dir().join(format!("dovetail-test-ca-{}-{test}.pem", std::process::id()));
    std::fs::write(&ca, &certs.ca_pem).unwrap();
    Some(Tls { cluster, db, ca })
}

impl Tls {
    /// The database URL with `query` appended, host `host` (the address stays 127.0.0.1).
    fn url(&self, host: &str, query: &str) -> String {
        let url = self.db.url().replacen("@127.0.0.1:", &format!("@{host}:"), 1);
        format!("{url}?hostaddr=127.0.0.1&{query}")
    }

    fn store(&self, host: &str, query: &str) -> PgState {
        PgState::new(PgTarget::parse(&self.url(host, query), None).unwrap()).unwrap()
    }

    /// Whether every `dovetail` session on the database uses TLS (and there is one).
    async fn all_sessions_tls(&self) -> bool {
        let (client, conn) =
            tokio_postgres::connect(&self.cluster.socket_url(&self.db), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = 'dovetail' AND a.datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        let (tls, all): (i64, i64) = (row.get(0), row.get(1));
        all > 0 && tls == all
    }
}

#[tokio::test]
async fn require_and_prefer_connect_over_tls() {
    let Some(t) = tls("tls_require") else { return };
    for mode in ["sslmode=require", "sslmode=prefer"] {
        let st = t.store("127.0.0.1", mode);
        st.ready().await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(t.all_sessions_tls().await, "{mode}: the connection uses TLS");
    }
}

#[tokio::test]
async fn verify_full_with_the_ca_connects() {
    let Some(t) = tls("tls_verify_full") else { return };
    let st = t.store("localhost", &format!("sslmode=verify-full&sslrootcert={}", t.ca.display()));
    st.ready().await.unwrap();
    assert!(t.all_sessions_tls().await);
    let st = t.store("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={}", t.ca.display()));
    st.ready().await.expect("verify-ca does not check the host name");
}

#[tokio::test]
async fn verify_full_without_the_ca_or_for_another_name_is_refused() {
    let Some(t) = tls("tls_refused") else { return };
    let err = t.store("localhost", "sslmode=verify-full").ready().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config, "{err}");
    assert!(err.message().contains("TLS certificate of PostgreSQL at localhost:"), "{err}");
    assert!(err.message().contains("UnknownIssuer"), "{err}");
    assert!(!err.message().contains(t.db.password()), "{err}");
    let ca = format!("sslmode=verify-full&sslrootcert={}", t.ca.display());
    let err = t.store("127.0.0.1", &ca).ready().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config, "{err}");
    assert!(err.message().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn disable_against_a_tls_only_server_is_refused() {
    let Some(t) = tls("tls_disable") else { return };
    let err = t.store("127.0.0.1", "sslmode=disable").ready().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Auth, "{err}");
    assert!(err.message().contains("without TLS") && err.message().contains("no encryption"), "{err}");
    assert!(err.hint().is_some_and(|h| h.contains("sslmode=verify-full")), "{err:?}");
}
