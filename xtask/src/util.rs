//! Small helpers shared by the tasks: workspace paths, child commands, copying, durations.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The workspace root (the directory above `xtask/`).
/// `--name VALUE` and `--name=VALUE` pairs from a bench's arguments, in order; a name not
/// in `names`, or one without its value, is an error quoting `usage`.
pub fn flag_values<'a>(args: &'a [String], names: &[&str], usage: &str) -> Result<Vec<(&'a str, &'a str)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        if !names.contains(&name) {
            bail!("unknown argument `{arg}` ({usage})");
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().map(String::as_str).with_context(|| format!("{name} needs a value ({usage})"))?,
        };
        out.push((name, value));
    }
    Ok(out)
}

pub fn workspace_root() -> PathBuf {
    // `XTASK_ROOT` points a command at another workspace (new-connector's test uses it).
    if let Some(root) = std::env::var_os("XTASK_ROOT").filter(|r| !r.is_empty()) {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Whether we run under CI (`CI=true`, as GitHub Actions and most CI systems set it).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A `cargo` command rooted at the workspace, using the same cargo that runs xtask.
pub fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    plain_output(&mut cmd);
    cmd
}

/// Turns colours off for a child when running under CI, so logs stay readable.
/// `dovetail run --config CONFIG` in `dir`, stdin closed, stdout and stderr to files.
pub fn dovetail_run(bin: &Path, dir: &Path, config: &Path, stdout: &Path, stderr: &Path) -> Result<Command> {
    let args = [std::ffi::OsStr::new("run"), "--config".as_ref(), config.as_os_str()];
    dovetail_cmd(bin, dir, &args, stdout, stderr)
}

/// `dovetail ARGS...` in `dir`, stdin closed, stdout and stderr to files.
pub fn dovetail_cmd(
    bin: &Path,
    dir: &Path,
    args: &[&std::ffi::OsStr],
    stdout: &Path,
    stderr: &Path,
) -> Result<Command> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(stdout).with_context(|| format!("creating {}", stdout.display()))?)
        .stderr(fs::File::create(stderr).with_context(|| format!("creating {}", stderr.display()))?);
    Ok(cmd)
}

pub fn plain_output(cmd: &mut Command) {
    if is_ci() {
        cmd.env("CARGO_TERM_COLOR", "never");
    }
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A command line as a user would type it, for "running: ..." lines.
pub fn display_command(cmd: &Command) -> String {
    let mut out = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program()).to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Copies a directory tree, leaving out entries for which `skip` returns true.
pub fn copy_dir(src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let path = entry.path();
        if skip(&path) {
            continue;
        }
        let target = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&path, &target, skip)?;
        } else {
            fs::copy(&path, &target).with_context(|| format!("copying {} to {}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

/// `12.3s`, `850ms`, `2m05s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// A path relative to the workspace root, with `/` separators, for messages.
pub fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_take_both_forms_in_order_and_refuse_the_rest() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let given = args(&["--a", "1", "--b=2", "--a=3"]);
        assert_eq!(flag_values(&given, &["--a", "--b"], "u").unwrap(), [("--a", "1"), ("--b", "2"), ("--a", "3")]);
        let unknown = flag_values(&args(&["--c", "1"]), &["--a"], "usage: x").unwrap_err().to_string();
        assert_eq!(unknown, "unknown argument `--c` (usage: x)");
        let bare = flag_values(&args(&["--a"]), &["--a"], "usage: x").unwrap_err().to_string();
        assert_eq!(bare, "--a needs a value (usage: x)");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(fmt_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn copy_dir_skips_what_it_is_told() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("sub")).unwrap();
        std::fs::create_dir_all(src.path().join(".dovetail")).unwrap();
        std::fs::write(src.path().join("a.toml"), "x").unwrap();
        std::fs::write(src.path().join("sub/b.jsonl"), "y").unwrap();
        std::fs::write(src.path().join(".dovetail/state.db"), "z").unwrap();
        let dst = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dst.path(), &|p| p.ends_with(".dovetail")).unwrap();
        assert!(dst.path().join("a.toml").is_file());
        assert!(dst.path().join("sub/b.jsonl").is_file());
        assert!(!dst.path().join(".dovetail").exists());
    }
}
