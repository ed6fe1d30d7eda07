//! The state conformance suite (dovetail-testkit) on `PgState`, each check in a database of
//! its own on the testkit's throwaway PostgreSQL.

use dovetail_state_pg::{PgState, PgTarget};
use dovetail_testkit::pg;
use dovetail_testkit::state_conformance::Subject;

async fn postgres() -> Subject {
    let name = std::thread::current().name().unwrap_or("conformance").to_owned();
    let Some(db) = pg::database(&name) else {
        return Subject::skipped();
    };
    let target = PgTarget::parse(db.url(), None).unwrap();
    let store = PgState::new(target).unwrap();
    store.ready().await.unwrap();
    let url = db.url().to_owned();
    Subject::new(store).failing_commits(move |position| {
        // The checkpoint upsert is a commit's last statement: a trigger refusing it fails the
        // commit inside its transaction, after every other part was written.
        let marker = serde_json::to_string(&position).unwrap().replace('\'', "''");
        let url = url.clone();
        async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            let task = tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "CREATE FUNCTION dovetail.conformance_fail() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                       IF (NEW.checkpoint::jsonb -> 'position') = '{marker}'::jsonb THEN
                         RAISE EXCEPTION 'state conformance: injected failure';
                       END IF;
                       RETURN NEW;
                     END $$;
                     CREATE TRIGGER conformance_fail BEFORE INSERT OR UPDATE ON dovetail.checkpoints
                       FOR EACH ROW EXECUTE FUNCTION dovetail.conformance_fail();"
                ))
                .await
                .unwrap();
            drop(client);
            let _ = task.await;
        }
    })
}

dovetail_testkit::state_conformance!(postgres);
