//! Property tests (issue 19): exact number comparison against integer arithmetic, cursor
//! comparison as a total order on numbers, the content hash through a record's own text,
//! and the declarative mapping's renames and defaults on generated records.

use std::cmp::Ordering;

use dovetail_core::mapping::Mapping;
use dovetail_core::record::{ContentHash, compare_cursors};
use proptest::prelude::*;
use serde_json::{Number, Value, json};

fn num(text: &str) -> Value {
    Value::Number(serde_json::from_str::<Number>(text).expect("a JSON number"))
}

/// `m × 10^e` written as JSON in one of several equivalent spellings.
fn spell(m: i64, e: i32, style: u8) -> String {
    match style % 3 {
        0 => format!("{m}e{e}"),
        1 => format!("{m}.000E{e:+}"),
        _ if (0..12).contains(&e) => format!("{m}{}", "0".repeat(e as usize)),
        _ => format!("{m}e{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Numbers compare as their exact values, whatever the spelling, far past f64 precision.
    #[test]
    fn numbers_compare_exactly(a in any::<i64>(), b in any::<i64>(), e in 0i32..30, sa in any::<u8>(), sb in any::<u8>()) {
        let (x, y) = (num(&spell(a, e, sa)), num(&spell(b, e, sb)));
        prop_assert_eq!(compare_cursors(&x, &y), Some(a.cmp(&b)), "{} vs {}", x, y);
        // 20-digit integers one apart are not equal (f64 would say they are).
        let big = |n: i64| num(&format!("1{:019}", n.unsigned_abs() % 1_000_000));
        prop_assert_eq!(compare_cursors(&big(a), &big(a.wrapping_add(1))).map(Ordering::is_eq), Some(a.unsigned_abs() % 1_000_000 == (a.wrapping_add(1)).unsigned_abs() % 1_000_000));
    }

    /// Cursor comparison is reflexive and antisymmetric on any pair of strings or numbers.
    #[test]
    fn cursor_comparison_is_antisymmetric(a in "[0-9:TZ.-]{0,24}", b in "[0-9:TZ.-]{0,24}", n in any::<i64>()) {
        for (x, y) in [(json!(a), json!(b)), (json!(n), num(&format!("{n}.5"))), (json!(a), json!(n))] {
            prop_assert_eq!(compare_cursors(&x, &x).unwrap_or(Ordering::Equal), Ordering::Equal);
            if let (Some(xy), Some(yx)) = (compare_cursors(&x, &y), compare_cursors(&y, &x)) {
                prop_assert_eq!(xy, yx.reverse());
            }
        }
    }

    /// A record's content hash is the hash of its canonical text: the same after a trip
    /// through its JSON, whatever order its keys were written in; a changed value changes it.
    #[test]
    fn the_content_hash_survives_the_records_text(keys in proptest::collection::vec("[a-z]{1,6}", 1..8), n in any::<i64>(), big in "[1-9][0-9]{18,30}") {
        let mut forward = String::from("{");
        for (i, k) in keys.iter().enumerate() {
            forward.push_str(&format!("\"{k}\": {i}, "));
        }
        forward.push_str(&format!("\"n\": {n}, \"big\": {big}}}"));
        let v: Value = serde_json::from_str(&forward).unwrap();
        let again: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        prop_assert_eq!(ContentHash::of(&v), ContentHash::of(&again));
        prop_assert_eq!(again["big"].to_string(), big.clone(), "exact digits");
        let mut changed = v.clone();
        changed["n"] = json!(n.wrapping_add(1));
        prop_assert_ne!(ContentHash::of(&v), ContentHash::of(&changed));
    }

    /// A rename moves the value and only it; a default fills only what is missing; mapping
    /// the same record twice gives the same row.
    #[test]
    fn renames_and_defaults_do_what_they_say(from in "[a-c]{1,5}", to in "[A-Z]{1,5}", value in any::<i64>(), other in any::<i64>(), present in any::<bool>()) {
        let mapping = Mapping::builder().rename(&from, &to).default_value("d", json!("dflt")).build();
        let mut record = json!({ "keep": other });
        record[&from] = json!(value);
        if present {
            record["d"] = json!(other);
        }
        let row = mapping.map(record.clone()).unwrap();
        prop_assert_eq!(&row[&to], &json!(value));
        prop_assert!(row.get(&from).is_none());
        prop_assert_eq!(&row["keep"], &json!(other));
        prop_assert_eq!(&row["d"], &if present { json!(other) } else { json!("dflt") });
        prop_assert_eq!(row, mapping.map(record).unwrap());
    }
}
