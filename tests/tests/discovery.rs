//! Sources read what the remote declares (a PostgreSQL catalog) when a run starts, never
//! while the config loads: commands that read no data return at once and make no
//! connection, while `dovetail run` reports an unreachable host with the config's line.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dovetail_e2e::{Scratch, show};

/// A pipeline whose PostgreSQL source is at `127.0.0.1:port`; `url` is on line 3.
fn pipeline(port: u16) -> Scratch {
    let s = Scratch::new();
    s.write(
        "dovetail.toml",
        &format!(
            "[pipelines.wh.source]\nkind = \"postgres\"\nurl = \"postgres://reader:${{PG_PW}}@127.0.0.1:{port}/db\"\n\
             table = \"t\"\n\n[pipelines.wh.sink]\nkind = \"jsonl\"\ndir = \"out\"\n"
        ),
    );
    s
}

/// A listener that counts the connections it accepts and never answers them (a host that
/// would hold a client until its connect timeout).
fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.push(c);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    (port, accepted)
}

/// The command's output and how long it ran, killed at `limit` (a client stuck on the silent
/// listener would otherwise wait for ever).
fn within(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    while child.try_wait().unwrap().is_none() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let _ = child.kill();
    (child.wait_with_output().unwrap(), took)
}

#[test]
fn commands_that_read_no_data_never_connect_to_the_source() {
    let (port, accepted) = silent_listener();
    let s = pipeline(port);
    for args in [
        &["status"][..],
        &["check", "--offline"][..],
        &["state", "show", "wh"][..],
        &["dead-letters", "list"][..],
        &["reset", "wh"][..],
    ] {
        let (out, took) = within(s.cmd(args).env("PG_PW", "pw-never-sent-1"), Duration::from_secs(5));
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "{args:?} connected to the source: {}", show(&out));
        assert!(took < Duration::from_secs(5), "{args:?} still waiting after {took:?}: {}", show(&out));
        if args[0] == "status" || args[0] == "check" {
            assert!(out.status.success(), "{args:?}: {}", show(&out));
        }
        assert!(!show(&out).contains("pw-never-sent-1"), "{}", show(&out));
    }
}

#[test]
fn a_run_reports_an_unreachable_source_with_the_config_line() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = pipeline(port);
    let out = s.cmd(&["run"]).env("PG_PW", "pw-never-sent-2").output().unwrap();
    let text = show(&out);
    assert_eq!(out.status.code(), Some(7), "an outage: {text}");
    assert!(text.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}")), "{text}");
    assert!(text.contains("dovetail.toml:3"), "names the line of `url`: {text}");
    assert!(!text.contains("pw-never-sent-2"), "{text}");
}
