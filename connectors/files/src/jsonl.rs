//! Reading one page of a JSON Lines file (blocking; the source runs it on the blocking pool).
//!
//! Each non-blank line is one JSON object. A line that is not valid JSON, or not an object,
//! becomes a [`Reject`] naming the file and line, with the line as raw input; the good lines
//! around it are still delivered; so is an object naming a key twice. Numbers keep their exact text (`arbitrary_precision`).

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use dovetail_core::{Error, Location, Next, Page, Provenance, Record, Reject, json_type_phrase};
use serde_json::Value;

use crate::config::StreamPlan;
use crate::position::{Opened, Position, READ_BUFFER, io_error};

/// Read up to `batch` records (and rejects) from `from`.
pub(crate) fn read_page(
    plan: &StreamPlan,
    from: Option<Position>,
    batch: usize,
    provenance: Arc<Provenance>,
) -> Result<Page, Error> {
    let mut opened = Opened::open(plan, from)?;
    let (mut offset, mut line, end) = (opened.offset, opened.line, opened.end);
    let mut records = Vec::with_capacity(batch.min(64 * 1024));
    let mut rejects = Vec::new();
    {
        let mut reader = BufReader::with_capacity(READ_BUFFER, (&opened.file).take(end - offset));
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        while records.len() + rejects.len() < batch && offset < end {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| io_error(e, format!("cannot read `{}`", plan.display)))?;
            if n == 0 {
                break; // the file shrank under us; the next read re-checks it
            }
            let mut text = trim_line_end(&buf);
            if offset == 0 {
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            offset += n as u64;
            line += 1;
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Validating UTF-8 once up front is faster than serde_json checking every string.
            let parsed = match std::str::from_utf8(text) {
                Ok(s) => parse(s),
                Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1)),
            };
            match parsed {
                Ok(v @ Value::Object(_)) => records.push(Record::new(v, provenance.clone()).at(Location::Line(line))),
                Ok(other) => rejects.push(reject(
                    plan,
                    line,
                    format!("expected a JSON object, found {}", json_type_phrase(&other)),
                    text,
                )),
                Err(why) => rejects.push(reject(plan, line, why, text)),
            }
        }
    }
    let next = if offset >= end {
        Next::Done { resume: if plan.follow { Some(opened.position(offset, line)?.to_value()) } else { None } }
    } else {
        Next::More(opened.position(offset, line)?.to_value())
    };
    Ok(Page { records, rejects, next })
}

/// Turn a dead letter's raw line back into a record: it must be one JSON object.
pub(crate) fn decode_line(raw: &str) -> Result<Value, Reject> {
    let fail = |reason: String| Reject { location: None, reason, path: None, raw: raw.to_owned(), drift: None };
    match parse(raw.trim()) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(fail(format!("expected a JSON object, found {}", json_type_phrase(&other)))),
        Err(why) => Err(fail(why)),
    }
}

/// One line as JSON, refusing an object that names a key twice (serde_json would keep the
/// last value silently).
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let v = serde_json::from_str::<Value>(text).map_err(|e| format!("invalid JSON: {e}"))?;
    match crate::strict::duplicate_key(text, &v) {
        Some(e) => Err(format!("invalid JSON: {e}")),
        None => Ok(v),
    }
}

fn reject(plan: &StreamPlan, line: u64, why: String, text: &[u8]) -> Reject {
    Reject {
        location: Some(Location::Line(line)),
        reason: format!("{} line {line}: {why}", plan.display),
        path: None,
        raw: String::from_utf8_lossy(text).into_owned(),
        drift: None,
    }
}

/// The line without its `\n` or `\r\n`.
pub(crate) fn trim_line_end(buf: &[u8]) -> &[u8] {
    let b = buf.strip_suffix(b"\n").unwrap_or(buf);
    b.strip_suffix(b"\r").unwrap_or(b)
}
