//! bench-fleet's arguments, config and verdict.

use super::*;

fn args(a: &[&str]) -> Result<Options> {
    parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn arguments_have_defaults_and_lists() {
    let o = args(&["--url", "postgres://x"]).unwrap();
    assert_eq!((o.workers, o.idle, o.streams, o.records), (vec![1, 2, 4], vec![8, 32, 128], 16, 5_000));
    let o = args(&["--workers", "1,4", "--idle=none", "--streams", "8", "--records", "2k", "--runs", "1", "--debug"])
        .unwrap();
    assert_eq!((o.workers, o.idle, o.streams, o.records, o.debug), (vec![1, 4], vec![], 8, 2_000, true));
    for bad in [
        &["--workers", "0"][..],
        &["--workers", "1,x"],
        &["--streams", "0"],
        &["--fast"],
        &["--workers=none", "--idle=none"],
    ] {
        assert!(args(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn the_config_runs_each_pipeline_once_a_year_into_its_own_file() {
    let t = config("postgres://u@h/db", "bench_fleet_a", "http://127.0.0.1:9", 3);
    let v: toml::Value = toml::from_str(&t).unwrap();
    assert_eq!(v["state"]["schema"].as_str(), Some("bench_fleet_a"));
    let p = v["pipelines"].as_table().unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p["s2"]["schedule"].as_str(), Some("0 0 1 1 *"));
    assert_eq!(p["s2"]["sink"]["path"].as_str(), Some("out_2.db"));
}

fn pass(workers: usize, secs: f64) -> Pass {
    let lease =
        LeaseSql { kinds: vec![("claim".into(), 10, 1.0, 0.5), ("fence check".into(), 30, 1.0, 0.1)], commits: 20 };
    Pass {
        workers,
        records: 1000,
        window: secs,
        cpu: Duration::from_secs(1),
        stream_minutes: 2.0,
        takeovers: 0,
        lease: Some(lease),
        connections: 0,
    }
}

#[test]
fn scaling_is_judged_on_the_medians_against_one_worker() {
    let o = args(&["--url", "u"]).unwrap();
    let passes = [pass(1, 10.0), pass(1, 12.0), pass(1, 10.0), pass(2, 5.0), pass(2, 20.0), pass(2, 5.5)];
    let mut all = passes.to_vec();
    all.extend([pass(4, 3.0), pass(4, 3.4), pass(4, 3.2)]);
    let v = print_scaling(&o, &all);
    // 1: 100/s; 2: median 181.8/s (1.82×); 4: median 312.5/s (3.12×).
    assert_eq!(v.missed().count(), 0, "{:?}", v.missed().collect::<Vec<_>>());
    let mut slow = passes.to_vec();
    slow.extend([pass(4, 4.0), pass(4, 4.0), pass(4, 3.0)]);
    let v = print_scaling(&o, &slow);
    assert_eq!(v.missed().collect::<Vec<_>>(), ["4 workers ≥ 3× one worker's records/s: 2.50×"]);
}
