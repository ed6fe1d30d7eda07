//! Secrets are never typed as plain `String`.
//!
//! Finds struct fields (enum struct-variants included) whose name ends in `token`, `secret`,
//! `password`, `api_key` or `key` and whose type is `String` or `Option<String>`. A small
//! lexer blanks out comments and string literals first, so braces and colons inside them do
//! not confuse the brace tracking. `// tidy: not-secret` on the field's line allows it.

use super::Finding;

const SECRET_SUFFIXES: &[&str] = &["token", "secret", "password", "api_key", "key"];
/// Record-key names, not credentials. The bare `key` is one too: in dovetail it is a
/// record's key (dead letters, ledger rows) or a config key's name; a secret key is
/// `api_key`, `secret_key`, `signing_key`, ... and those are still caught.
const NOT_SECRET_NAMES: &[&str] =
    &["key", "primary_key", "cursor_key", "key_columns", "idempotency_key", "sort_key", "key_field", "partition_key"];
/// The opt-out marker, written in a comment on the field's line.
pub const MARKER: &str = "tidy: not-secret";

/// Whether a field name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.trim_start_matches("r#").to_ascii_lowercase();
    !NOT_SECRET_NAMES.contains(&name.as_str()) && SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether a type (whitespace removed) is `String` or `Option<String>`, paths included.
pub fn is_plain_string(ty: &str) -> bool {
    let mut t: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    for prefix in [
        "::std::string::",
        "std::string::",
        "::alloc::string::",
        "alloc::string::",
        "::std::option::",
        "std::option::",
        "::core::option::",
        "core::option::",
    ] {
        t = t.replace(prefix, "");
    }
    t == "String" || t == "Option<String>"
}

/// Checks one source file; `path` is used in the findings.
pub fn check(path: &str, src: &str) -> Vec<Finding> {
    let lines: Vec<&str> = src.lines().collect();
    let mut findings = Vec::new();
    for field in struct_fields(src) {
        if !is_secret_name(&field.name) || !is_plain_string(&field.ty) {
            continue;
        }
        let line_text = lines.get(field.line - 1).copied().unwrap_or("");
        if line_text.contains(MARKER) {
            continue;
        }
        findings.push(Finding {
            file: path.to_owned(),
            line: Some(field.line),
            message: format!(
                "field `{}` looks like a secret but is typed `{}`",
                field.name,
                field.ty.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            hint: format!(
                "type it as dovetail_core's Secret (redacted Debug, filled from ${{ENV}} / ${{file:path}}), or add `// {MARKER}` on the line if it is not a secret"
            ),
        });
    }
    findings
}

/// A named field of a struct or struct-like enum variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Field name (`r#` prefix kept if present).
    pub name: String,
    /// Type as written (comments and strings blanked).
    pub ty: String,
    /// 1-based line of the field name.
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Struct,
    Enum,
    Other,
}

/// Every named field of every struct / enum struct-variant in `src`.
pub fn struct_fields(src: &str) -> Vec<Field> {
    let code = blank_comments_and_strings(src);
    let mut fields = Vec::new();
    let mut stack: Vec<Block> = Vec::new();
    // Text since the last `;`, `{`, `}` (or `,` at field level), with each char's line.
    let mut seg: Vec<(char, usize)> = Vec::new();
    // Nesting inside the current field's type: (), [], <>.
    let mut depth: i32 = 0;
    let mut line = 1;
    let mut prev = '\0';
    for c in code.chars() {
        let top = stack.last().copied();
        let in_struct = top == Some(Block::Struct);
        match c {
            '{' if depth == 0 => {
                let text: String = seg.iter().map(|(c, _)| *c).collect();
                stack.push(block_kind(&text, top));
                seg.clear();
            }
            '}' if depth == 0 => {
                if in_struct {
                    push_field(&seg, &mut fields);
                }
                stack.pop();
                seg.clear();
            }
            ',' if depth == 0 && in_struct => {
                push_field(&seg, &mut fields);
                seg.clear();
            }
            ',' if depth == 0 && top == Some(Block::Enum) => seg.clear(),
            ';' if depth == 0 => seg.clear(),
            _ => {
                if in_struct {
                    match c {
                        '(' | '[' | '<' => depth += 1,
                        ')' | ']' => depth -= 1,
                        '>' if prev != '-' && prev != '=' => depth -= 1,
                        _ => {}
                    }
                    depth = depth.max(0);
                }
                seg.push((c, line));
            }
        }
        if c == '\n' {
            line += 1;
        }
        prev = c;
    }
    fields
}

/// What a `{` opens, judged by the text before it.
fn block_kind(before: &str, parent: Option<Block>) -> Block {
    let text = strip_attributes(before);
    let words: Vec<&str> = text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    if words.iter().any(|w| *w == "struct" || *w == "union") {
        Block::Struct
    } else if words.contains(&"enum") {
        Block::Enum
    } else if parent == Some(Block::Enum) && words.len() == 1 && is_ident(text.trim()) {
        Block::Struct // a struct-like enum variant
    } else {
        Block::Other
    }
}

fn push_field(seg: &[(char, usize)], out: &mut Vec<Field>) {
    let text: String = seg.iter().map(|(c, _)| *c).collect();
    // Skip attributes, then find `name: Type` after an optional visibility.
    let mut rest = strip_attributes(&text).trim_start();
    let mut start = text.len() - rest.len();
    if let Some(after) = rest.strip_prefix("pub")
        && after.starts_with(|c: char| c.is_whitespace() || c == '(')
    {
        let after = after.trim_start();
        let after = match after.strip_prefix('(') {
            Some(inner) => inner.split_once(')').map_or(inner, |(_, r)| r),
            None => after,
        };
        rest = after.trim_start();
        start = text.len() - rest.len();
    }
    let Some((name, ty)) = rest.split_once(':') else {
        return;
    };
    let name = name.trim();
    if !is_ident(name) || ty.starts_with(':') {
        return;
    }
    // Line of the name's first character.
    let char_index = text[..start].chars().count();
    let line = seg.get(char_index).map_or(0, |(_, l)| *l);
    out.push(Field { name: name.to_owned(), ty: ty.trim().to_owned(), line });
}

fn is_ident(s: &str) -> bool {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Drops leading `#[...]` attributes (any number, with nested brackets).
fn strip_attributes(text: &str) -> &str {
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix('#') {
        let after = after.trim_start().strip_prefix('!').unwrap_or(after).trim_start();
        let Some(inner) = after.strip_prefix('[') else {
            break;
        };
        let mut depth = 1;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(e) => rest = inner[e..].trim_start(),
            None => break,
        }
    }
    rest
}

/// Replaces comments and the contents of string / char literals with spaces, keeping
/// newlines, so positions and line numbers stay the same.
pub fn blank_comments_and_strings(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r"..." / r#"..."# / br#"..."#: copy the opener, blank until the closer.
            let open_len = chars[i..].iter().position(|&c| c == '"').unwrap_or(0) + 1;
            out.extend(&chars[i..i + open_len]);
            i += open_len;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    out.push('"');
                    out.extend(std::iter::repeat_n('#', hashes));
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => {
                        out.push(' ');
                        if let Some(&e) = chars.get(i + 1) {
                            out.push(blank(e));
                        }
                        i += 2;
                    }
                    '"' => {
                        out.push('"');
                        i += 1;
                        break;
                    }
                    other => {
                        out.push(blank(other));
                        i += 1;
                    }
                }
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = if next == Some('\\') {
                chars[i + 2..].iter().take(10).position(|&c| c == '\'').map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    out.push('\'');
                    out.extend(std::iter::repeat_n(' ', end - i - 1));
                    out.push('\'');
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// If a raw string literal starts at `i`, the number of `#`s it uses.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let prev_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    if prev_is_ident {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') || chars.get(j) == Some(&'c') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_string_token_field_fails() {
        let src = "pub struct AuthConfig {\n    /// The token.\n    pub api_token: String,\n    pub url: String,\n}\n";
        let f = check("connectors/x/src/config.rs", src);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, Some(3));
        assert!(f[0].message.contains("api_token"));
        assert!(f[0].to_string().starts_with("connectors/x/src/config.rs:3:"));
    }

    #[test]
    fn option_string_and_paths_fail() {
        let src = "struct C { client_secret: Option<String>, password: std::string::String, pub(crate) api_key: Option< ::std::string::String > }";
        let names: Vec<_> = check("a.rs", src).into_iter().map(|f| f.message).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn secret_type_and_not_secret_names_pass() {
        let src = r#"
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub token: Secret,
    pub refresh_token: Option<SecretString>,
    pub primary_key: Vec<String>,
    pub cursor_key: String,
    pub idempotency_key: String,
    pub sort_key: Option<String>,
    pub partition_key: String,
    pub key_field: String,
    pub headers: HashMap<String, String>,
}
"#;
        assert!(check("a.rs", src).is_empty(), "{:?}", check("a.rs", src));
    }

    #[test]
    fn marker_allows_a_field() {
        let src = "struct Page {\n    next_page_token: Option<String>, // tidy: not-secret (a pagination cursor)\n}\n";
        assert!(check("a.rs", src).is_empty());
        let src = "struct Page {\n    next_page_token: Option<String>,\n}\n";
        assert_eq!(check("a.rs", src).len(), 1);
    }

    #[test]
    fn function_parameters_and_locals_are_not_fields() {
        let src = r#"
impl Client {
    fn new(
        token: String,
        api_key: Option<String>,
    ) -> Self {
        let password: String = String::new();
        Self { token: token.clone(), other: Some(api_key) }
    }
}
fn f(secret: String) {}
"#;
        assert!(check("a.rs", src).is_empty(), "{:?}", struct_fields(src));
    }

    #[test]
    fn enum_struct_variants_are_fields() {
        let src =
            "enum Auth {\n    Bearer { token: String },\n    Basic { user: String, password: Secret },\n    None,\n}\n";
        let f = check("a.rs", src);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, Some(2));
    }

    #[test]
    fn braces_in_strings_comments_and_chars_do_not_confuse() {
        let src = r##"
const S: &str = "struct Fake { token: String }";
const R: &str = r#"{ "}" "#;
// struct Commented { password: String }
/* struct Block { secret: String } */
fn f<'a>(x: &'a str) -> char { '{' }
struct Real<'a> {
    #[serde(rename = "}")]
    name: &'a str,
    pub session_token: String,
    map: HashMap<String, Vec<(u8, char)>>,
    arr: [u8; 4],
    cb: fn(u8) -> u8,
    webhook_secret: Option<String>,
}
"##;
        let f = check("a.rs", src);
        let lines: Vec<_> = f.iter().map(|f| f.line.unwrap()).collect();
        assert_eq!(lines, vec![10, 14], "{f:?} / {:?}", struct_fields(src));
    }

    #[test]
    fn tuple_structs_and_unit_structs_are_ignored() {
        let src = "struct Token(String);\nstruct Key;\nstruct W { inner: Token }\n";
        assert!(check("a.rs", src).is_empty());
    }

    #[test]
    fn names_and_types() {
        assert!(is_secret_name("api_key"));
        assert!(!is_secret_name("key"));
        assert!(is_secret_name("secret_key"));
        assert!(is_secret_name("r#token"));
        assert!(!is_secret_name("primary_key"));
        assert!(!is_secret_name("tokens"));
        assert!(is_plain_string("Option < String >"));
        assert!(!is_plain_string("Option<Secret>"));
        assert!(!is_plain_string("Vec<String>"));
    }
}
