//! The per-pipeline run lock, in-process and across processes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use dovetail_core::ErrorKind;
use dovetail_core::state::{DeliveryStore, HistoryStore};
use dovetail_state::{ABANDONED, SqliteState};

const CHILD_READY: &str = "DOVETAIL_CHILD_HOLDS_LOCK";

#[tokio::test]
async fn a_held_lock_is_refused_naming_the_holder_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let st = SqliteState::open(&path).unwrap();
    let guard = st.lock("crm sync").await.unwrap();

    let lock_file = st.lock_dir().unwrap().read_dir().unwrap().next().unwrap().unwrap().path();
    assert!(lock_file.starts_with(dir.path().join("state.db.locks")), "{}", lock_file.display());
    let content = std::fs::read_to_string(&lock_file).unwrap();
    assert!(content.contains(&format!("\"pid\":{}", std::process::id())), "{content}");

    // Same handle, and a second handle on the same file: both refused (flock conflicts
    // between open file descriptions even inside one process).
    let other = SqliteState::open(&path).unwrap();
    for store in [&st, &other] {
        let err = store.lock("crm sync").await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Busy);
        let msg = err.message();
        let pid = std::process::id();
        assert!(msg.starts_with(&format!("pipeline `crm sync` is already running in process {pid} on host ")), "{msg}");
        assert!(msg.ends_with("; wait for it to finish or stop that process"), "{msg}");
        assert!(err.next_step().starts_with(&format!("wait for process {pid} on host ")), "{}", err.next_step());
    }
    // The refused attempt did not clobber the holder's details.
    assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), content);

    // Other pipelines are independent.
    let q = other.lock("q").await.unwrap();

    drop(guard);
    assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), "", "details cleared on release");
    let again = other.lock("crm sync").await.unwrap();
    assert!(st.lock("q").await.is_err());
    drop((again, q));
    st.lock("q").await.unwrap();
}

#[tokio::test]
async fn in_memory_store_locks_within_the_process() {
    let st = SqliteState::open_in_memory().unwrap();
    assert_eq!(st.lock_dir(), None);
    let guard = st.lock("p").await.unwrap();
    let err = st.clone().lock("p").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Busy);
    assert!(err.message().contains("pipeline `p` is already running in this process"), "{err}");
    let q = st.lock("q").await.unwrap();
    drop(guard);
    let _p = st.lock("p").await.unwrap();
    drop(q);
}

#[tokio::test]
async fn lock_is_free_right_after_the_holder_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let st = SqliteState::open(&path).unwrap();

    // The run a holder started before it died (it never finishes).
    st.begin_run("p", "child start").await.unwrap();
    let lock_file = st.lock_dir().unwrap().join("p.lock");
    std::fs::create_dir_all(lock_file.parent().unwrap()).unwrap();
    // Another process takes the same flock and writes its details as dovetail does.
    let script = format!(
        "import fcntl, json, os, sys, time\n\
         f = open({path:?}, 'a+')\n\
         fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n\
         f.truncate(0); f.write(json.dumps({{'pid': os.getpid(), 'host': 'h', 'started_at': 'T'}}) + '\\n'); f.flush()\n\
         print('{CHILD_READY}', flush=True)\n\
         time.sleep(60)\n",
        path = lock_file.display().to_string()
    );
    let mut child =
        Command::new("python3").args(["-c", &script]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|l| l.contains(CHILD_READY));
    assert!(ready, "child never reported holding the lock");

    let err = st.lock("p").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Busy);
    assert!(err.message().contains(&format!("already running in process {pid} on host ")), "{err}");

    child.kill().unwrap(); // SIGKILL: no destructor, no unlock, no cleanup.
    child.wait().unwrap();
    let started = Instant::now();
    let _guard = st.lock("p").await.expect("a killed holder must not keep the lock");
    println!("lock re-acquired {:?} after the holder was killed", started.elapsed());

    // The killed process's run can never finish.
    let runs = st.runs(Some("p"), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].started_at, "child start");
    assert_eq!(runs[0].outcome, ABANDONED);
}
