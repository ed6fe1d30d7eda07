//! Loading real config files from a temp dir: every error names file, line and nearest key.

use std::collections::HashMap;
use std::path::PathBuf;

use super::*;
use crate::interpolate::Lookup;

struct Vars(HashMap<&'static str, &'static str>);

impl Lookup for Vars {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.to_string())
    }
}

fn no_env() -> Vars {
    Vars(HashMap::new())
}

const GOOD: &str = r#"[pipelines.orders]
batch_size = 500

[pipelines.orders.source]
kind = "files"

[[pipelines.orders.source.streams]]
name = "orders"
path = "orders.jsonl"
primary_key = ["id"]

[pipelines.orders.sink]
kind = "sqlite"
path = "out/warehouse.db"

[pipelines.orders.streams.orders]
sync_mode = "full_refresh"
delete = "soft_delete"
[pipelines.orders.streams.orders.mapping]
rename = { id = "order_id" }
"#;

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dovetail.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn load_err(text: &str, env: &Vars) -> String {
    let (_dir, path) = write(text);
    match load_with(&path, env) {
        Ok(_) => panic!("config loaded but should not:\n{text}"),
        Err(e) => {
            assert_eq!(*e.kind(), dovetail_core::ErrorKind::Config);
            let msg = e.message().to_owned();
            let label = path.display().to_string();
            msg.strip_prefix(&label)
                .unwrap_or_else(|| panic!("`{msg}` does not start with the file `{label}`"))
                .to_owned()
        }
    }
}

#[test]
fn a_good_config_loads() {
    let (dir, path) = write(GOOD);
    let p = load_with(&path, &no_env()).unwrap();
    assert_eq!(p.state_path, dir.path().join(".dovetail/state.db"));
    assert_eq!(p.pipelines.len(), 1);
    let spec = &p.pipelines[0];
    assert_eq!((spec.name.as_str(), spec.source.kind(), spec.sink.kind()), ("orders", "files", "sqlite"));
    assert_eq!(spec.batch_size, Some(500));
    let o = &spec.streams["orders"];
    assert_eq!((o.sync_mode, o.delete_mode), (SyncMode::FullRefresh, DeleteMode::SoftDelete));
    assert!(o.mapping.is_some());
    assert!(p.literal_secrets.is_empty());
    // `delete` with incremental: deletes the source reports are applied.
    let (_dir, path) = write(&GOOD.replace("\"full_refresh\"", "\"incremental\""));
    let o = &load_with(&path, &no_env()).unwrap().pipelines[0].streams["orders"];
    assert_eq!((o.sync_mode, o.delete_mode), (SyncMode::Incremental, DeleteMode::SoftDelete));
}

#[test]
fn a_typo_names_file_line_and_suggestion() {
    let text = GOOD.replace("batch_size = 500", "batchsize = 500");
    assert_eq!(
        load_err(&text, &no_env()),
        ":2: unknown field `batchsize` in [pipelines.orders]; did you mean `batch_size`?"
    );
}

#[test]
fn typos_deeper_down_get_their_own_line() {
    let text = GOOD.replace("sync_mode = \"full_refresh\"", "sync_mode = \"full_refresh\"\nsyncmode = \"x\"");
    assert_eq!(
        load_err(&text, &no_env()),
        ":18: unknown field `syncmode` in [pipelines.orders.streams.orders]; did you mean `sync_mode`?"
    );
    let text = GOOD.replace("rename = {", "renam = {");
    assert_eq!(
        load_err(&text, &no_env()),
        ":20: unknown field `renam` in [pipelines.orders.streams.orders.mapping]; did you mean `rename`?"
    );
    let text = GOOD.replace("\"full_refresh\"", "\"full_refesh\"");
    assert_eq!(
        load_err(&text, &no_env()),
        ":17: unknown variant `full_refesh` for `sync_mode` in [pipelines.orders.streams.orders]; did you mean `full_refresh`?"
    );
    let text = GOOD.replace("batch_size = 500", "batch_size = \"many\"");
    assert!(load_err(&text, &no_env()).starts_with(":2: invalid type: string \"many\""));
}

#[test]
fn connector_level_unknown_keys_get_the_right_line() {
    let text = GOOD.replace("path = \"out/warehouse.db\"", "path = \"out/warehouse.db\"\ntable_prefx = \"crm_\"");
    assert_eq!(
        load_err(&text, &no_env()),
        ":15: unknown field `table_prefx` in [pipelines.orders.sink]; did you mean `table_prefix`?"
    );
    let text = GOOD.replace("primary_key = [\"id\"]", "primary_key = [\"id\"]\npaht = \"x\"");
    assert_eq!(
        load_err(&text, &no_env()),
        ":11: unknown field `paht` in [pipelines.orders.source.streams[0]]; did you mean `path`?"
    );
    let text = GOOD.replace("path = \"out/warehouse.db\"", "");
    assert_eq!(load_err(&text, &no_env()), ":12: missing field `path` in [pipelines.orders.sink]");
}

#[test]
fn an_unknown_kind_lists_the_known_kinds() {
    let text = GOOD.replace("kind = \"sqlite\"", "kind = \"sqlit\"");
    let e = load_err(&text, &no_env());
    assert!(e.starts_with(":13: unknown sink kind `sqlit` in [pipelines.orders.sink]; did you mean `sqlite`?"), "{e}");
    assert!(e.contains("`sqlite`, `jsonl`"), "{e}");
    let text = GOOD.replace("kind = \"files\"", "kind = \"ftp\"");
    // Every registered kind is listed (a scaffolded connector adds one).
    let known: Vec<String> = crate::registry::sources().iter().map(|e| format!("`{}`", e.kind)).collect();
    assert_eq!(
        load_err(&text, &no_env()),
        format!(
            ":5: unknown source kind `ftp` in [pipelines.orders.source]; (known source kinds: {})",
            known.join(", ")
        )
    );
    assert!(known.starts_with(&["`files`".to_owned(), "`rest`".to_owned()]), "{known:?}");
}

#[test]
fn stream_settings_are_checked_against_the_source() {
    let text = GOOD
        .replace("[pipelines.orders.streams.orders]", "[pipelines.orders.streams.ordres]")
        .replace("streams.orders.mapping", "streams.ordres.mapping");
    assert_eq!(
        load_err(&text, &no_env()),
        ":16: [pipelines.orders.streams.ordres]: source `files` has no stream `ordres`; did you mean `orders`? (its streams: `orders`)"
    );
    let text = GOOD.replace("batch_size = 500", "max_dead_letter_ratio = 1.5");
    assert!(
        load_err(&text, &no_env())
            .starts_with(":2: `max_dead_letter_ratio` in [pipelines.orders] must be between 0.0 and 1.0")
    );
}

#[test]
fn env_and_file_interpolation() {
    let text = format!(
        "[state]\nurl = \"sqlite://${{file:state-url}}\"\n{}",
        GOOD.replace("name = \"orders\"", "name = \"${STREAM}\"").replace(
            "[pipelines.orders.streams.orders]\n",
            "[pipelines.orders.streams.orders]\nprimary_key = [\"${KEY_COL}\"]\n"
        )
    );
    let (dir, path) = write(&text);
    std::fs::write(dir.path().join("state-url"), "var/state.db\n").unwrap();
    let env = Vars(HashMap::from([("STREAM", "orders"), ("KEY_COL", "order_id")]));
    let p = load_with(&path, &env).unwrap();
    assert_eq!(p.state_path, dir.path().join("var/state.db"));
    assert_eq!(p.pipelines[0].stream_names(), ["orders"]);
    assert_eq!(p.pipelines[0].streams["orders"].primary_key, Some(vec!["order_id".to_owned()]));
}

#[test]
fn an_in_memory_state_is_refused_naming_the_line() {
    for url in ["sqlite://:memory:", ":memory:", "file::memory:?cache=shared"] {
        let text = format!("[state]\nurl = \"{url}\"\n{GOOD}");
        let e = load_err(&text, &no_env());
        assert!(e.starts_with(":2: `state.url` cannot be `:memory:`"), "{url}: {e}");
    }
}

#[test]
fn a_missing_variable_or_file_is_named_with_its_line() {
    let text = GOOD.replace("path = \"orders.jsonl\"", "path = \"${DATA_DIR}/orders.jsonl\"");
    assert_eq!(load_err(&text, &no_env()), ":9: environment variable `DATA_DIR` is not set (in the value of `path`)");
    let text = GOOD.replace("path = \"orders.jsonl\"", "path = \"${file:nowhere.txt}\"");
    let e = load_err(&text, &no_env());
    assert!(e.starts_with(":9: cannot read file `nowhere.txt`"), "{e}");
}

#[test]
fn a_double_dollar_escapes_interpolation() {
    let text = GOOD
        .replace("name = \"orders\"", "name = \"ord$${ers}\"")
        .replace("[pipelines.orders.streams.orders]", "[pipelines.orders.streams.\"ord${ers}\"]")
        .replace("streams.orders.mapping", "streams.\"ord${ers}\".mapping");
    let (_dir, path) = write(&text);
    let p = load_with(&path, &no_env()).unwrap();
    assert_eq!(p.pipelines[0].stream_names(), ["ord${ers}"]);
}

#[test]
fn state_urls() {
    // PostgreSQL state: the state path is a label naming user, server, database and schema,
    // never the password; the schema must be a plain name and applies to PostgreSQL only.
    let text =
        format!("[state]\nurl = \"postgres://u:s3cret@db:6543/dovetail?sslmode=require\"\nschema = \"st\"\n{GOOD}");
    let (dir, path) = write(&text);
    let label = load_with(&path, &no_env()).unwrap().state_path;
    assert_eq!(label, PathBuf::from("postgres://u@db:6543/dovetail?schema=st"));
    drop(dir);
    let bad = format!("[state]\nurl = \"postgres://u@db/d?sslmode=maybe\"\n{GOOD}");
    assert!(load_err(&bad, &no_env()).contains("unknown sslmode `maybe`"), "{}", load_err(&bad, &no_env()));
    let bad = format!("[state]\nurl = \"postgres://u@db/d\"\nschema = \"Bad-Name\"\n{GOOD}");
    assert!(load_err(&bad, &no_env()).contains("is not a plain PostgreSQL name"));
    let bad = format!("[state]\nurl = \"x.db\"\nschema = \"st\"\n{GOOD}");
    assert!(load_err(&bad, &no_env()).contains("`state.schema` applies to PostgreSQL state only"));
    let (dir, path) = write(&format!("[state]\nurl = \"/tmp/abs.db\"\n{GOOD}"));
    assert_eq!(load_with(&path, &no_env()).unwrap().state_path, PathBuf::from("/tmp/abs.db"));
    let light = load_state_only(&path).unwrap();
    assert_eq!(light.pipelines, ["orders"]);
    drop(dir);
}

#[test]
fn postgres_state_refuses_a_refresh_token_pipeline_without_a_key_when_the_config_is_read() {
    let rest = r#"[state]
url = "postgres://u@db:6543/dovetail"

[pipelines.crm.source]
kind = "rest"
base_url = "https://api.example.com"
[pipelines.crm.source.auth]
type = "oauth2_refresh_token"
token_url = "https://api.example.com/oauth/token"
client_id = "dovetail"
refresh_token = "${CRM_REFRESH}"
[[pipelines.crm.source.streams]]
name = "items"
path = "/v1/items"
primary_key = ["id"]

[pipelines.crm.sink]
kind = "sqlite"
path = "out.db"
"#;
    let env = Vars([("CRM_REFRESH", "r-1")].into());
    let err = load_err(rest, &env);
    assert!(err.starts_with(":8:"), "names the `auth.type` line: {err}");
    assert!(err.contains("pipeline `crm`'s source uses `oauth2_refresh_token`"), "{err}");
    assert!(err.contains(dovetail_state::SECRET_KEY_ENV), "{err}");
    // With a key, or with SQLite state (tokens.json beside it), the same pipeline loads.
    const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    let keyed = Vars([("CRM_REFRESH", "r-1"), (dovetail_state::SECRET_KEY_ENV, KEY)].into());
    let (_d, path) = write(rest);
    load_with(&path, &keyed).unwrap();
    let (_d, path) = write(&rest.replace("url = \"postgres://u@db:6543/dovetail\"", "url = \"state.db\""));
    load_with(&path, &env).unwrap();
}

#[test]
fn the_schema_lists_every_connector() {
    let schema = schema();
    let text = serde_json::to_string(&schema).unwrap();
    let source = &schema["$defs"]["PipelineConfig"]["properties"]["source"];
    let kinds = |v: &serde_json::Value| -> Vec<String> {
        let v = if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
            &schema["$defs"][r.trim_start_matches("#/$defs/")]
        } else {
            v
        };
        v["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["properties"]["kind"]["const"].as_str().unwrap().to_owned())
            .collect()
    };
    let registered = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(kinds(source), registered(crate::registry::sources().iter().map(|e| e.kind).collect()));
    assert_eq!(
        kinds(&schema["$defs"]["PipelineConfig"]["properties"]["sink"]),
        registered(crate::registry::sinks().iter().map(|e| e.kind).collect())
    );
    assert!(kinds(source).starts_with(&["files".to_owned(), "rest".to_owned()]));
    assert!(text.contains("JSON pointer to the array of records"), "the REST stream keys are documented");
    assert!(text.contains("Records per page and per sink transaction"));
}

#[test]
fn a_drift_table_sets_the_policy_per_class_and_a_typo_is_named() {
    let text = format!("{GOOD}\n[pipelines.orders.drift]\ndefault = \"quarantine\"\ntype_changed = \"pause\"\n");
    let (_dir, path) = write(&text);
    let p = load_with(&path, &no_env()).unwrap();
    let policy = p.pipelines[0].drift;
    use dovetail_core::{DriftAction, DriftClass};
    assert_eq!(
        (
            policy.action(DriftClass::TypeChanged),
            policy.action(DriftClass::NewField),
            dovetail_core::DriftPolicy::default().action(DriftClass::EnumValue)
        ),
        (DriftAction::Pause, DriftAction::Quarantine, DriftAction::Warn)
    );
    let err = load_err(&format!("{GOOD}\n[pipelines.orders.drift]\ntype_change = \"pause\"\n"), &no_env());
    assert!(err.starts_with(":23:") && err.contains("did you mean `type_changed`"), "{err}");
    let err = load_err(&format!("{GOOD}\n[pipelines.orders.drift]\nnew_field = \"stop\"\n"), &no_env());
    assert!(err.contains("stop") && err.contains("pause"), "{err}");
}
