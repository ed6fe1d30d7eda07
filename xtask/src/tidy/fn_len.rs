//! Functions in the engine and the HTTP request loop stay short enough to review in one
//! sitting: the delivery guarantee and the retry rules live there, and a 300-line function
//! whose closures capture twenty locals is where a reviewer stops reading.
//!
//! The scan is lexical: a line whose code starts with a function signature (`fn`, with any
//! of `pub`, `pub(crate)`, `async`, `const`, `unsafe` before it) opens a function, and its
//! length runs to the line where the braces it opened close. Braces inside string and char
//! literals and comments are ignored; a signature without a body (a trait method) is skipped.

use super::Finding;

/// Where the limit applies: a path prefix relative to the workspace root.
pub const SCOPES: &[&str] = &[
    "crates/core/src/pipeline/",
    "crates/http/src/exec.rs",
    "crates/http/src/call.rs",
    "crates/http/src/classify.rs",
    "crates/http/src/retry.rs",
];
/// Longest function allowed, in lines, signature and closing brace included.
pub const MAX_FN_LINES: usize = 100;

/// Functions in `src` (the file at `path`) longer than [`MAX_FN_LINES`].
pub fn check(path: &str, src: &str) -> Vec<Finding> {
    if !SCOPES.iter().any(|s| path.starts_with(s)) {
        return Vec::new();
    }
    functions(src)
        .into_iter()
        .filter(|f| f.lines > MAX_FN_LINES)
        .map(|f| Finding {
            file: path.to_owned(),
            line: Some(f.start),
            message: format!("fn `{}` is {} lines long (at most {MAX_FN_LINES} here)", f.name, f.lines),
            hint: "split it into named steps (a struct per stage, a function per decision)".into(),
        })
        .collect()
}

/// One function found in a file.
#[derive(Debug, PartialEq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// 1-based line of its signature.
    pub start: usize,
    /// Lines from the signature to the closing brace, both included.
    pub lines: usize,
}

/// Every function with a body in `src`, nested ones included.
pub fn functions(src: &str) -> Vec<Function> {
    let code: Vec<String> = strip(src).lines().map(str::to_owned).collect();
    let mut out = Vec::new();
    for (i, line) in code.iter().enumerate() {
        let Some(name) = signature(line) else { continue };
        let mut depth = 0i64;
        let mut opened = false;
        'scan: for (j, l) in code.iter().enumerate().skip(i) {
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break 'scan,
                    _ => {}
                }
                if opened && depth == 0 {
                    out.push(Function { name: name.clone(), start: i + 1, lines: j - i + 1 });
                    break 'scan;
                }
            }
        }
    }
    out
}

/// The function name when the line's code starts with a signature.
fn signature(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    loop {
        let before = rest;
        for prefix in ["pub(crate) ", "pub(super) ", "pub ", "async ", "const ", "unsafe ", "extern \"C\" "] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        if rest == before {
            break;
        }
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// `src` with comments and the insides of string and char literals blanked, lines kept.
fn strip(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        '\n' => out.push('\n'),
                        _ => {}
                    }
                }
                out.push('"');
            }
            // A char literal ('{', '\''), not a lifetime ('a): a lifetime has no closing quote
            // right after its first character.
            '\'' => {
                let mut ahead = chars.clone();
                let literal = match ahead.next() {
                    Some('\\') => true,
                    Some(_) => ahead.next() == Some('\''),
                    None => false,
                };
                if literal {
                    if chars.next() == Some('\\') {
                        chars.next();
                    }
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                    out.push_str("' '");
                } else {
                    out.push('\'');
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_ignore_braces_in_strings_chars_and_comments() {
        let src = "pub(crate) async fn a() {\n    let s = \"}}}\"; // }\n    let c = '}';\n    /* { */\n}\n\
                   fn b<'x>(v: &'x str) -> &'x str {\n    v\n}\ntrait T {\n    fn sig(&self);\n}\n";
        let found = functions(src);
        assert_eq!(
            found,
            vec![Function { name: "a".into(), start: 1, lines: 5 }, Function { name: "b".into(), start: 6, lines: 3 },]
        );
    }

    #[test]
    fn a_long_function_in_scope_is_a_violation_and_elsewhere_is_not() {
        let body: String = (0..MAX_FN_LINES).map(|i| format!("    let x{i} = {i};\n")).collect();
        let src = format!("fn long() {{\n{body}}}\nfn short() {{}}\n");
        let found = check("crates/core/src/pipeline/stream.rs", &src);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].line, Some(1));
        assert!(found[0].message.contains("`long` is 102 lines"), "{}", found[0].message);
        assert!(check("crates/core/src/record.rs", &src).is_empty());
    }
}
