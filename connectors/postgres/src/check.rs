//! `dovetail check`: connect and verify the privileges writing will need, creating nothing.

use dovetail_core::Error;
use tokio_postgres::GenericClient;

use crate::error::PgErr;

/// The schema exists, the user may use it and create tables in it (or, lacking CREATE, the
/// schema already holds tables; those it may not write are warned about), or it does not
/// exist and the user may create it.
pub(crate) async fn privileges<C: GenericClient>(c: &C, schema: &str) -> Result<(), Error> {
    let e = |err| PgErr::new("checking privileges").err(err);
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), current_user::text, \
             has_database_privilege(current_database(), 'CREATE')",
            &[&schema],
        )
        .await
        .map_err(e)?;
    let (exists, user, create_db): (bool, String, bool) = (row.get(0), row.get(1), row.get(2));
    if !exists {
        if create_db {
            return Ok(());
        }
        return Err(Error::permanent(format!(
            "postgres sink: schema `{schema}` does not exist and user `{user}` may not create it"
        ))
        .with_hint(format!("create schema `{schema}` for the sink's user, or grant it CREATE on the database")));
    }
    let row = c
        .query_one(
            "SELECT has_schema_privilege($1, 'USAGE'), has_schema_privilege($1, 'CREATE'), \
             coalesce(array_agg(c.relname::text ORDER BY c.relname) FILTER (WHERE NOT ( \
               has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE') \
               AND has_table_privilege(c.oid, 'DELETE'))), '{}'), \
             coalesce(array_agg(c.relname::text) FILTER (WHERE c.oid IS NOT NULL), '{}') \
             FROM pg_class c RIGHT JOIN pg_namespace n ON n.oid = c.relnamespace AND c.relkind IN ('r', 'p') \
             WHERE n.nspname = $1",
            &[&schema],
        )
        .await
        .map_err(e)?;
    let (usage, create, unwritable, tables): (bool, bool, Vec<String>, Vec<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if !usage {
        return Err(Error::permanent(format!("postgres sink: user `{user}` has no USAGE on schema `{schema}`"))
            .with_hint(format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {user}")));
    }
    let tables: Vec<&String> = tables.iter().filter(|t| !t.starts_with("_dovetail")).collect();
    // Which tables the streams write is not known here: a table the user may not write is
    // said, and the write to it fails naming the privilege.
    for t in unwritable.iter().filter(|t| !t.starts_with("_dovetail")) {
        tracing::warn!(
            schema,
            table = t.as_str(),
            user = user.as_str(),
            "the sink's user may not INSERT, UPDATE and DELETE in this table"
        );
    }
    if !create && tables.is_empty() {
        return Err(Error::permanent(format!(
            "postgres sink: user `{user}` may not create tables in schema `{schema}` (CREATE), and it holds none"
        ))
        .with_hint(format!("GRANT CREATE ON SCHEMA {schema} TO {user}, or create the tables for it")));
    }
    if !create {
        tracing::warn!(
            schema,
            user = user.as_str(),
            "the sink's user may write the existing tables but not create new ones"
        );
    }
    Ok(())
}
