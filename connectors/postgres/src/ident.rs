//! Identifiers from vendor data: always quoted, and shortened deterministically when longer
//! than PostgreSQL keeps (63 bytes; it would silently cut them, so two long names sharing a
//! prefix would land in one column).

/// Column the sink sets to the time of each write.
pub const SYNCED_AT: &str = "_synced_at";
/// The most bytes of a PostgreSQL identifier (`NAMEDATALEN - 1`).
pub const MAX_IDENT: usize = 63;
/// Bytes kept of a longer name: with `_` and 16 hex digits of its hash it makes 63.
const KEEP: usize = MAX_IDENT - 17;

/// `ident` as a double-quoted SQL identifier, embedded quotes doubled.
pub(crate) fn quote(ident: &str) -> String {
    let mut s = String::with_capacity(ident.len() + 2);
    s.push('"');
    for c in ident.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// `schema.table`, both quoted.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

/// The name PostgreSQL stores for `name`: itself when it fits, else its first bytes (cut
/// at a character boundary) and the xxh3-64 of the whole name, so different long names
/// stay different.
pub(crate) fn short(name: &str) -> String {
    if name.len() <= MAX_IDENT {
        return name.to_owned();
    }
    let mut cut = KEEP;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:016x}", &name[..cut], xxhash_rust::xxh3::xxh3_64(name.as_bytes()))
}

/// A SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_shortens() {
        assert_eq!(quote(r#"x"; DROP TABLE s; --"#), r#""x""; DROP TABLE s; --""#);
        let a = format!("{}a", "f".repeat(69));
        let b = format!("{}b", "f".repeat(69));
        assert_eq!(short("id"), "id");
        assert_eq!((short(&a).len(), short(&b).len()), (MAX_IDENT, MAX_IDENT));
        assert_ne!(short(&a), short(&b));
        assert_eq!(short(&a), short(&a));
        let wide = "é".repeat(40);
        assert!(short(&wide).len() <= MAX_IDENT && short(&wide).starts_with("éé"));
    }
}
