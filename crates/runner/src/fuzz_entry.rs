//! The body of the fuzz target over the config loader (`fuzz/fuzz_targets/config.rs`, `cargo
//! xtask fuzz`), public so the fuzz crate and the stable replay of every committed corpus and
//! crash file (tests/tests/fuzz_replay.rs) call the same code.

use std::path::PathBuf;

use crate::config;
use crate::diag::Doc;
use crate::interpolate::Lookup;

/// A fixed environment: what `${VAR}` finds does not depend on the machine.
struct FuzzEnv;

impl Lookup for FuzzEnv {
    fn env(&self, name: &str) -> Option<String> {
        match name {
            "DOVETAIL_FUZZ_URL" => Some("https://api.example.com".to_owned()),
            "DOVETAIL_FUZZ_TOKEN" => Some("fuzz-token".to_owned()),
            "DOVETAIL_FUZZ_NUMBER" => Some("12".to_owned()),
            _ => None,
        }
    }
}

/// Whether a `${file:…}` reference names a path that leaves the config's folder (absolute,
/// or through `..`): such a file could be anything (`/dev/zero` never ends), so the input is
/// not tried.
fn leaves_the_folder(text: &str) -> bool {
    text.match_indices("file:").any(|(at, _)| {
        let rest = &text[at + "file:".len()..];
        let path = rest[..rest.find('}').unwrap_or(rest.len())].trim();
        path.starts_with(['/', '\\', '~']) || path.contains("..")
    })
}

/// `data` as a config file: TOML parsed with spans, `${…}` interpolated (from a fixed
/// environment; `${file:…}` in a folder that does not exist), validated and every pipeline's
/// connectors built — loaded, or refused with an error, never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if leaves_the_folder(text) {
        return;
    }
    let doc = Doc {
        label: "fuzz.toml".to_owned(),
        text: text.to_owned(),
        base_dir: PathBuf::from("/nonexistent/dovetail-fuzz"),
    };
    let _ = config::load_doc(&doc, &FuzzEnv);
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_references_outside_the_folder_are_not_tried() {
        for text in ["a = \"${file:/dev/zero}\"", "a = \"${file: ../../x}\"", "a = \"${file:~/.ssh/id}\""] {
            assert!(super::leaves_the_folder(text), "{text}");
        }
        assert!(!super::leaves_the_folder("a = \"${file:token}\" b = \"${HOME}\""));
    }
}
