//! Which records may shape a table. Before a table is created from a batch, or columns are
//! added for new fields, each record that brings new fields is checked against the names
//! the table has (SQLite compares them ignoring ASCII case) and SQLite's column limit
//! (`SQLITE_MAX_COLUMN`, 2,000 in the bundled build; read from the connection). A record
//! that fails is refused with the reason and adds no column, so it leaves no trace in the
//! schema; the columns come only from the records that pass.

use std::collections::{BTreeMap, HashMap, HashSet};

use dovetail_core::{DeleteMode, Record, SinkStream};
use rusqlite::Connection;
use rusqlite::limits::Limit;
use serde_json::Value;

use crate::column::{Role, SYNCED_AT, Seen};
use crate::table::Table;
use crate::write::Target;

/// The fields to add as columns, and the records refused instead of shaping the table.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// New columns (for a new table: every column but the sink's own), with the JSON types
    /// the admitted records hold in them.
    pub(crate) fields: BTreeMap<String, Seen>,
    /// Refused records by batch index, ascending, with why.
    pub(crate) refused: Vec<(usize, String)>,
}

/// The names a table has or will have, and room for more.
pub(crate) struct Shape<'a> {
    table: &'a str,
    /// Data columns the table already has, exactly: fields that need no new column.
    exact: HashSet<&'a str>,
    /// Every column name, folded as SQLite compares them, with its name and role.
    taken: HashMap<String, (String, Role)>,
    /// Columns the table has (or will have), the sink's own included.
    columns: usize,
    /// The sink's own columns (`_synced_at`, the soft-delete column).
    system: usize,
    /// SQLite's most columns per table.
    limit: usize,
    keys: &'a [String],
    /// Columns planned before any record is seen (a new table's keys).
    planned: BTreeMap<String, Seen>,
}

/// SQLite's column limit on this connection (`SQLITE_LIMIT_COLUMN`).
pub(crate) fn column_limit(conn: &Connection) -> usize {
    // 2,000 is SQLite's compiled default, should the query fail.
    conn.limit(Limit::SQLITE_LIMIT_COLUMN).ok().and_then(|n| usize::try_from(n).ok()).unwrap_or(2_000)
}

impl<'a> Shape<'a> {
    /// The shape of a table not yet created: the stream's keys and the sink's own columns.
    pub(crate) fn new_table(table: &'a str, stream: &'a SinkStream, soft_col: &str, limit: usize) -> Shape<'a> {
        let soft = (stream.delete_mode == DeleteMode::SoftDelete).then_some(soft_col);
        let mut taken = HashMap::new();
        for (name, role) in [(Some(SYNCED_AT), Role::SyncedAt), (soft, Role::SoftDelete)] {
            if let Some(name) = name {
                taken.insert(name.to_ascii_lowercase(), (name.to_owned(), role));
            }
        }
        let system = taken.len();
        let mut planned = BTreeMap::new();
        for key in &stream.key_columns {
            taken.entry(key.to_ascii_lowercase()).or_insert_with(|| (key.clone(), Role::Data));
            planned.insert(key.clone(), Seen::default());
        }
        let columns = system + planned.len();
        Shape { table, exact: HashSet::new(), taken, columns, system, limit, keys: &stream.key_columns, planned }
    }

    /// The shape of an existing table.
    pub(crate) fn of(table: &'a Table, keys: &'a [String], limit: usize) -> Shape<'a> {
        let mut exact = HashSet::new();
        let mut taken = HashMap::new();
        for c in &table.columns {
            if c.role == Role::Data {
                exact.insert(c.name.as_str());
            }
            taken.entry(c.name.to_ascii_lowercase()).or_insert_with(|| (c.name.clone(), c.role));
        }
        let system = table.columns.iter().filter(|c| c.role != Role::Data).count();
        let columns = table.columns.len();
        Shape { table: &table.name, exact, taken, columns, system, limit, keys, planned: BTreeMap::new() }
    }

    /// Walk `records[from..]`, admitting each record's new fields or refusing the record.
    /// Records that are not objects or lack a key are left to the write, which refuses them
    /// before they could need a column.
    pub(crate) fn plan(mut self, records: &[Record], from: usize) -> Plan {
        let mut plan = Plan { fields: std::mem::take(&mut self.planned), refused: Vec::new() };
        // Reused across records: fields already planned, and fields new to the table.
        let mut known: Vec<(&str, &Value)> = Vec::new();
        let mut fresh: Vec<(String, &str, &Value)> = Vec::new();
        for (i, record) in records.iter().enumerate().skip(from) {
            let Some(obj) = record.data.as_object() else { continue };
            if self.keys.iter().any(|k| obj.get(k).is_none_or(Value::is_null)) {
                continue;
            }
            known.clear();
            fresh.clear();
            let mut why = None;
            for (k, v) in obj {
                if self.exact.contains(k.as_str()) {
                    continue;
                }
                if plan.fields.contains_key(k) {
                    known.push((k, v));
                    continue;
                }
                if let Some(reason) = self.clash(k, &fresh) {
                    why = Some(reason);
                    break;
                }
                fresh.push((k.to_ascii_lowercase(), k, v));
            }
            let why = why.or_else(|| self.too_many(obj.len(), fresh.len()));
            if let Some(why) = why {
                plan.refused.push((i, why));
                continue;
            }
            for &(k, v) in &known {
                if let Some(seen) = plan.fields.get_mut(k) {
                    seen.add(v);
                }
            }
            for (folded, k, v) in fresh.drain(..) {
                let mut seen = Seen::default();
                seen.add(v);
                plan.fields.insert(k.to_owned(), seen);
                self.taken.insert(folded, (k.to_owned(), Role::Data));
                self.columns += 1;
            }
        }
        plan
    }

    /// Why field `k`, new to the table, cannot have a column: a NUL in its name, or a name
    /// that SQLite takes for a column the table has or another new field of the record.
    fn clash(&self, k: &str, fresh: &[(String, &str, &Value)]) -> Option<String> {
        if k.contains('\0') {
            return Some(format!("field name {k:?} contains a NUL character"));
        }
        let folded = k.to_ascii_lowercase();
        if let Some((name, role)) = self.taken.get(&folded) {
            let why = if *role == Role::Data {
                "SQLite column names ignore case"
            } else {
                "the sink sets that column itself"
            };
            return Some(format!("field `{k}` clashes with column `{name}` of table `{}` ({why})", self.table));
        }
        let (_, other, _) = fresh.iter().find(|f| f.0 == folded)?;
        Some(format!(
            "fields `{other}` and `{k}` would be one column of table `{}` (SQLite column names ignore case)",
            self.table
        ))
    }

    /// Why a record of `fields` fields, `new` of them new to the table, does not fit
    /// SQLite's column limit.
    fn too_many(&self, fields: usize, new: usize) -> Option<String> {
        if self.columns + new <= self.limit {
            return None;
        }
        let limit = thousands(self.limit);
        if fields + self.system > self.limit {
            let own = if self.system == 1 { "column" } else { "columns" };
            return Some(format!(
                "record has {} fields; a SQLite table holds at most {limit} columns \
                 (SQLITE_MAX_COLUMN), {} of them the sink's own {own}",
                thousands(fields),
                self.system
            ));
        }
        Some(format!(
            "record brings {} new fields but table `{}` already has {} of at most {limit} columns (SQLITE_MAX_COLUMN)",
            thousands(new),
            self.table,
            thousands(self.columns)
        ))
    }
}

/// Whether a table with a column per schema property fits SQLite's column limit; if not,
/// warns that the table will be made from the records written instead (each refused if it
/// brings too many fields), so a wide schema never stops the stream.
pub(crate) fn schema_fits(conn: &Connection, t: &Target<'_>, fields: &BTreeMap<String, Seen>) -> bool {
    let limit = column_limit(conn);
    let shape = Shape::new_table(&t.table, t.stream, t.soft_col, limit);
    let columns = shape.columns + fields.keys().filter(|f| !shape.planned.contains_key(*f)).count();
    if columns <= limit {
        return true;
    }
    tracing::warn!(
        table = t.table.as_str(),
        stream = t.stream.name.as_str(),
        columns,
        limit,
        "the stream's schema needs more columns than a SQLite table holds (SQLITE_MAX_COLUMN); \
         the table is made from the records written instead"
    );
    false
}

/// `2100` as `2,100`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use dovetail_core::{Batch, Error, Provenance, Record, SinkStream, WriteReport};
    use rusqlite::Connection;
    use rusqlite::limits::Limit;
    use serde_json::{Value, json};

    use crate::table::Table;
    use crate::write::{Target, write_batch};

    /// An in-memory database with one limit lowered, and the sink's view of its tables.
    fn db(limit: Limit, value: i32) -> (Connection, HashMap<String, Table>) {
        let conn = Connection::open_in_memory().unwrap();
        conn.set_limit(limit, value).unwrap();
        (conn, HashMap::new())
    }

    fn write(db: &mut (Connection, HashMap<String, Table>), rows: Vec<Value>) -> Result<WriteReport, Error> {
        write_to(db, None, rows)
    }

    /// Write `rows` to table `t` of a stream with `schema`.
    fn write_to(
        db: &mut (Connection, HashMap<String, Table>),
        schema: Option<Value>,
        rows: Vec<Value>,
    ) -> Result<WriteReport, Error> {
        let stream = Arc::new(SinkStream {
            name: "t".into(),
            key_columns: vec!["id".into()],
            schema,
            delete_mode: dovetail_core::DeleteMode::Keep,
        });
        let prov = Arc::new(Provenance::default());
        let records: Vec<Record> = rows.into_iter().map(|r| Record::new(r, prov.clone())).collect();
        let batch = Batch::new(stream.clone(), records.into());
        let target = Target { table: "t".into(), stream: &stream, soft_col: "_deleted_at" };
        write_batch(&mut db.0, &mut db.1, &target, &batch)
    }

    fn reasons(report: &WriteReport) -> Vec<(usize, String)> {
        report.rejected.iter().map(|(i, e)| (*i, e.report())).collect()
    }

    fn columns(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('t')").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn ids(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT id FROM t ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// `{"id": id, "<prefix>1": 1, ...}` with `n` fields besides `id`.
    fn wide(id: i64, prefix: &str, n: usize) -> Value {
        let mut obj = serde_json::Map::new();
        obj.insert("id".into(), json!(id));
        for i in 1..=n {
            obj.insert(format!("{prefix}{i}"), json!(i));
        }
        Value::Object(obj)
    }

    #[test]
    fn a_record_over_the_column_limit_is_refused_and_the_others_shape_the_table() {
        // 10: SQLite's own `pragma_table_info` has 8 columns.
        let mut db = db(Limit::SQLITE_LIMIT_COLUMN, 10);
        let report =
            write(&mut db, vec![json!({"id": 1, "a": 1}), wide(2, "f", 10), json!({"id": 3, "b": 2})]).unwrap();
        assert_eq!(report.written, 2);
        let rejected = reasons(&report);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].0, 1);
        assert!(
            rejected[0].1.contains("record has 11 fields; a SQLite table holds at most 10 columns (SQLITE_MAX_COLUMN)"),
            "{rejected:?}"
        );
        assert_eq!(columns(&db.0), ["id", "a", "b", "_synced_at"]);

        // Adding columns past the limit: the record that needs them is refused, others go on.
        let rows = vec![wide(4, "c", 7), json!({"id": 5, "c1": 1}), json!({"id": 6, "a": 6})];
        let report = write(&mut db, rows).unwrap();
        assert_eq!(report.written, 2);
        let rejected = reasons(&report);
        assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), [0], "{rejected:?}");
        assert!(
            rejected[0].1.contains("record brings 7 new fields but table `t` already has 4 of at most 10 columns"),
            "{rejected:?}"
        );
        assert_eq!(columns(&db.0), ["id", "a", "b", "_synced_at", "c1"]);
        assert_eq!(ids(&db.0), [1, 3, 5, 6]);
    }

    #[test]
    fn a_record_refused_for_a_name_clash_leaves_no_column() {
        let mut db = db(Limit::SQLITE_LIMIT_COLUMN, 2_000);
        let report = write(&mut db, vec![json!({"id": 1, "Name": "A", "name": "a"}), json!({"id": 2, "name": "b"})]);
        let report = report.unwrap();
        assert_eq!(report.written, 1);
        let rejected = reasons(&report);
        assert!(rejected[0].1.contains("fields `Name` and `name` would be one column"), "{rejected:?}");
        assert_eq!(columns(&db.0), ["id", "name", "_synced_at"]);

        // On an existing table too: the clashing record adds nothing, a later one adds `x`.
        let rows = vec![json!({"id": 3, "x": 1, "X": 2}), json!({"id": 4, "name": "d", "x": 4})];
        let report = write(&mut db, rows).unwrap();
        assert_eq!((report.written, reasons(&report)[0].0), (1, 0));
        let rows = vec![json!({"id": 5, "Y": 1, "y": 2}), json!({"id": 6, "name": "f"})];
        let report = write(&mut db, rows).unwrap();
        assert_eq!((report.written, report.rejected.len()), (1, 1));
        assert_eq!(columns(&db.0), ["id", "name", "_synced_at", "x"]);
        assert_eq!(ids(&db.0), [2, 4, 6]);
    }

    #[test]
    fn values_and_rows_over_the_length_limit_are_refused_naming_it() {
        let mut db = db(Limit::SQLITE_LIMIT_LENGTH, 1_000);
        let (big, half) = ("x".repeat(2_000), "y".repeat(600));
        let rows = vec![
            json!({"id": 1, "s": big, "t": "-"}),
            json!({"id": 2, "s": "ok", "t": "ok"}),
            json!({"id": 3, "s": half, "t": half}),
            json!({"id": 4, "s": ["nested", big]}),
        ];
        let report = write(&mut db, rows).unwrap();
        assert_eq!(report.written, 1);
        let rejected = reasons(&report);
        assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 2, 3], "{rejected:?}");
        let value = "field `s` holds 2,000 bytes; a SQLite value holds at most 1,000 bytes (SQLITE_MAX_LENGTH)";
        assert!(rejected[0].1.contains(value), "{rejected:?}");
        let row = "row refused by table `t`: a SQLite row holds at most 1,000 bytes (SQLITE_MAX_LENGTH)";
        assert!(rejected[1].1.contains(row), "{rejected:?}");
        assert!(rejected[2].1.contains("field `s` holds 2,013 bytes"), "{rejected:?}");
        assert_eq!(ids(&db.0), [2]);
    }

    #[test]
    fn a_schema_wider_than_a_table_holds_leaves_the_table_to_the_records() {
        let mut db = db(Limit::SQLITE_LIMIT_COLUMN, 10);
        let props: serde_json::Map<String, Value> =
            (0..12).map(|i| (format!("p{i:02}"), json!({"type": "integer"}))).collect();
        let schema = json!({"type": "object", "properties": props});
        let report = write_to(&mut db, Some(schema), vec![json!({"id": 1, "p00": 1}), wide(2, "q", 10)]).unwrap();
        assert_eq!((report.written, reasons(&report)[0].0), (1, 1));
        assert_eq!(columns(&db.0), ["id", "p00", "_synced_at"]);
    }

    #[test]
    fn thousands_are_grouped() {
        let grouped: Vec<String> = [0, 999, 1_000, 2_100, 1_000_000_000].into_iter().map(super::thousands).collect();
        assert_eq!(grouped, ["0", "999", "1,000", "2,100", "1,000,000,000"]);
    }
}
