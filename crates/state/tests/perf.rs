//! Throughput figures for the engine's hot path (printed, never asserted on timing).
//!
//! `cargo test -p dovetail-state --release --test perf -- --nocapture`

use std::time::{Duration, Instant};

use dovetail_core::state::{Checkpoint, Commit, DeliveryStore, LedgerEntry};
use dovetail_core::{ContentHash, Key};
use dovetail_state::SqliteState;
use serde_json::json;

const BATCH: usize = 1000;
const ROUNDS: usize = 50;

fn batch(round: usize, pass: u64) -> Commit {
    let ledger = (0..BATCH)
        .map(|i| {
            let n = round * BATCH + i;
            let mut hash = [0u8; 16];
            hash[..8].copy_from_slice(&(n as u64 ^ pass).to_le_bytes());
            LedgerEntry { key: Key::from_canonical(n.to_string()), hash: ContentHash(hash), dest_id: None }
        })
        .collect();
    Commit {
        pipeline: "bench".into(),
        stream: "orders".into(),
        pass,
        ledger,
        checkpoint: Some(Checkpoint { position: Some(json!({"line": round * BATCH})), pass, ..Default::default() }),
        ..Default::default()
    }
}

fn summary(name: &str, mut t: Vec<Duration>) {
    t.sort();
    let mean = t.iter().sum::<Duration>() / t.len() as u32;
    println!(
        "{name}: mean {mean:?}, median {:?}, min {:?}, max {:?} over {} batches of {BATCH}",
        t[t.len() / 2],
        t[0],
        t[t.len() - 1],
        t.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_lookup_of_1000_keys() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteState::open(dir.path().join("state.db")).unwrap();
    let (mut insert, mut update, mut lookup) = (Vec::new(), Vec::new(), Vec::new());
    for pass in 1..=2u64 {
        for round in 0..ROUNDS {
            let c = batch(round, pass);
            let keys: Vec<Key> = c.ledger.iter().map(|e| e.key.clone()).collect();
            let t = Instant::now();
            let found = st.ledger_lookup("bench", "orders", &keys).await.unwrap();
            lookup.push(t.elapsed());
            assert_eq!(found.iter().filter(|h| h.is_some()).count(), if pass == 1 { 0 } else { BATCH });
            let t = Instant::now();
            st.commit(c).await.unwrap();
            if pass == 1 { insert.push(t.elapsed()) } else { update.push(t.elapsed()) }
        }
    }
    summary("commit (1000 new ledger rows + checkpoint)", insert);
    summary("commit (1000 updated ledger rows + checkpoint)", update);
    summary("ledger_lookup (1000 keys)", lookup);
}
