//! `dovetail config-schema`: the JSON Schema of the config file.

use crate::output;

/// Print the schema.
pub fn run() -> anyhow::Result<i32> {
    let schema = crate::config::schema();
    output::out(&format!("{}\n", serde_json::to_string_pretty(&schema)?))?;
    Ok(0)
}
