//! Snapshot checks: each stream's declared JSON Schema and the rows its data maps to match
//! the committed insta snapshots in the connector's own `tests/snapshots`, so any change to
//! what a connector emits is a reviewed diff. New or changed snapshots are written the insta
//! way (`INSTA_UPDATE=always`, or `.snap.new` files for `cargo insta review`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use dovetail_core::testing::MemoryState;
use serde_json::Value;

use super::checks::{builder, cases, combine, each_case, run_once, serve, succeeded};
use super::{Outcome, SourceContract, data};
use crate::format::Fixture;
use crate::replay::FixtureServer;

/// Compare `value` with the snapshot `name` in `dir`; a mismatch is an `Err` with insta's
/// message (insta panics, and a check never panics on the connector's behalf).
fn matches_snapshot(dir: &Path, name: &str, value: &Value) -> Result<(), String> {
    // Pretty JSON text, not insta's JSON serializer: with serde_json's arbitrary_precision
    // (exact numbers) insta would write numbers as `$serde_json::private::Number` objects.
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    let r = catch_unwind(AssertUnwindSafe(|| {
        insta::with_settings!({
            snapshot_path => dir,
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, &text);
        });
    }));
    r.map_err(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        let first = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("mismatch").to_owned();
        format!(
            "snapshot `{name}` differs or is new ({first}); review it with INSTA_UPDATE=always or cargo insta review"
        )
    })
}

fn no_dir() -> Outcome {
    Outcome::Fail(
        "no snapshots dir given (`.snapshots_dir(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/tests/snapshots\"))`)".into(),
    )
}

/// Each stream's declared schema matches `contract_schema_<stream>.snap`.
pub(super) async fn schemas_match_snapshots(c: &SourceContract) -> Outcome {
    let Some(dir) = &c.snapshots_dir else { return no_dir() };
    let cases = match cases(c) {
        Ok(cs) => cs,
        Err(e) => return Outcome::Fail(e),
    };
    // Building does no IO: any URL does, and none reaches the schema — unless the schema
    // comes from the vendor, which the setup exchanges answer.
    let server = match &c.setup {
        Some(_) => match serve(c, Some(&Fixture::new(Vec::new()))).await {
            Ok(s) => s,
            Err(e) => return Outcome::Fail(e),
        },
        None => None,
    };
    let url = server.as_ref().map_or_else(|| "http://127.0.0.1:9".to_owned(), FixtureServer::base_url);
    let mut results = Vec::new();
    for case in cases {
        let r = match builder(c, case)(&url) {
            Err(e) => Err(format!("building the source failed: {}", e.report())),
            Ok(src) => match src.discover(&dovetail_core::Cx::default()).await.map(|()| src.streams()) {
                Err(e) => Err(format!("the source's discovery failed: {}", e.report())),
                Ok(specs) => match specs.into_iter().find(|s| s.name == case.name) {
                    None => Err(format!("the source declares no stream `{}`", case.name)),
                    Some(spec) => match spec.schema {
                        None => Ok(Some("no declared schema: it is inferred from the first page".to_owned())),
                        Some(schema) => {
                            matches_snapshot(dir, &format!("contract_schema_{}", case.name), &schema).map(|()| None)
                        }
                    },
                },
            },
        };
        results.push((case.name.clone(), r));
    }
    combine(results)
}

/// The rows each stream's data maps to (what reaches the sink, ordered by key) match
/// `contract_rows_<stream>.snap`.
pub(super) async fn mappings_match_snapshots(c: &SourceContract) -> Outcome {
    let Some(dir) = &c.snapshots_dir else { return no_dir() };
    each_case(c, async |case| {
        let d = data::of(case);
        let live = data::live(c, case, d.as_ref()).await?;
        let run = run_once(c, &live.build, &live.url, &case.name, &MemoryState::default()).await?;
        succeeded(&case.name, &run.report)?;
        let rows = Value::Array(run.sink.rows(&case.name));
        // Snapshots are committed: the secret scan reads them too.
        c.note(rows.to_string());
        matches_snapshot(dir, &format!("contract_rows_{}", case.name), &rows).map(|()| None)
    })
    .await
}
