//! Reading one page of a CSV file (blocking; the source runs it on the blocking pool).
//!
//! The header row is required and is read from the start of the file on every call, so a
//! resumed read keeps the column mapping. Rows become objects `header → string` (empty cells
//! `null` with `empty_as_null`). The reader is `flexible`, so a row with the wrong number of
//! fields is seen here and becomes a [`Reject`] naming the file and line, with the row
//! re-encoded as CSV as its raw input.
//!
//! Line numbers are exact: rows are split on `\n` only (a trailing `\r` is dropped), and each
//! row's first line is worked out from the reader's position after it, the newlines inside
//! its quoted fields and whether it ended with a newline — so blank lines, CRLF files and
//! multi-line quoted fields all number correctly.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use csv::{ByteRecord, ReaderBuilder, Terminator};
use dovetail_core::{Error, Location, Next, Page, Provenance, Record, Reject};
use serde_json::{Map, Value};

use crate::config::{CsvOptions, StreamPlan};
use crate::position::{Opened, Position, READ_BUFFER, io_error};

/// The header row of a CSV file and where the data after it starts.
pub(crate) struct Header {
    /// Column names, in file order.
    pub names: Vec<String>,
    /// Byte offset just after the header row.
    pub end: u64,
    /// Lines consumed by the header row (and blank lines before it).
    pub lines: u64,
}

/// Read up to `batch` records (and rejects) from `from`.
pub(crate) fn read_page(
    plan: &StreamPlan,
    opts: CsvOptions,
    from: Option<Position>,
    batch: usize,
    provenance: Arc<Provenance>,
) -> Result<Page, Error> {
    let mut opened = Opened::open(plan, from)?;
    let read_err = |e: csv::Error| csv_error(e, plan);
    let Some(header) = read_header(plan, opts, &opened.file, opened.end)? else {
        if plan.follow {
            // No complete header line yet: wait for more.
            let resume = opened.position(opened.offset, opened.line)?;
            return Ok(Page {
                records: Vec::new(),
                rejects: Vec::new(),
                next: Next::Done { resume: Some(resume.to_value()) },
            });
        }
        return Err(Error::permanent(format!("`{}` has no header row; csv files need one", plan.display)));
    };
    let (base_offset, base_line) =
        if opened.offset < header.end { (header.end, header.lines) } else { (opened.offset, opened.line) };
    let end = opened.end;
    let (mut offset, mut line) = (base_offset, base_line);
    let mut records = Vec::with_capacity(batch.min(64 * 1024));
    let mut rejects = Vec::new();
    if offset < end {
        opened.file.seek(SeekFrom::Start(offset))?;
        let mut rdr = builder(opts).buffer_capacity(READ_BUFFER).from_reader((&opened.file).take(end - offset));
        let mut rec = ByteRecord::new();
        while records.len() + rejects.len() < batch {
            if !rdr.read_byte_record(&mut rec).map_err(read_err)? {
                // End of the window, past any trailing blank lines.
                let at = rdr.position();
                offset = base_offset + at.byte();
                line = base_line + at.line().saturating_sub(u64::from(opened.ends_with_newline));
                break;
            }
            let after = rdr.position();
            offset = base_offset + after.byte();
            let ended_with_newline = offset < end || opened.ends_with_newline;
            let newlines_inside: u64 = rec.iter().map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64).sum();
            // Saturating: a file that shrinks mid-read must not underflow (the next read restarts it).
            line = base_line + after.line().saturating_sub(u64::from(ended_with_newline));
            let row_line = line.saturating_sub(newlines_inside).max(base_line + 1);
            let fields = fields(&rec);
            if is_blank(&fields) {
                continue;
            }
            match row_to_object(&header.names, &fields, opts) {
                Ok(v) => records.push(Record::new(v, provenance.clone()).at(Location::Line(row_line))),
                Err(why) => rejects.push(Reject {
                    location: Some(Location::Line(row_line)),
                    reason: format!("{} line {row_line}: {why}", plan.display),
                    path: None,
                    raw: encode_row(&fields, opts),
                    drift: None,
                }),
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

/// Read the header row within the first `end` bytes of `file`; `None` if there is none yet.
pub(crate) fn read_header(
    plan: &StreamPlan,
    opts: CsvOptions,
    mut file: &std::fs::File,
    end: u64,
) -> Result<Option<Header>, Error> {
    file.seek(SeekFrom::Start(0)).map_err(|e| io_error(e, format!("cannot read `{}`", plan.display)))?;
    let mut rdr = builder(opts).from_reader(file.take(end));
    let mut rec = ByteRecord::new();
    loop {
        if !rdr.read_byte_record(&mut rec).map_err(|e| csv_error(e, plan))? {
            return Ok(None);
        }
        if !is_blank(&fields(&rec)) {
            break;
        }
    }
    let after = rdr.position();
    let ended_with_newline = after.byte() < end || end == 0 || {
        let mut b = [0u8; 1];
        file.seek(SeekFrom::Start(end - 1))
            .and_then(|_| file.read_exact(&mut b))
            .map_err(|e| io_error(e, format!("cannot read `{}`", plan.display)))?;
        b[0] == b'\n'
    };
    let bad = |why: String| Error::permanent(format!("`{}`: the header row {why}", plan.display));
    let mut names = Vec::with_capacity(rec.len());
    let mut seen = BTreeSet::new();
    for (i, f) in fields(&rec).into_iter().enumerate() {
        let f = if i == 0 { f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f) } else { f };
        let name = std::str::from_utf8(f).map_err(|_| bad(format!("has invalid UTF-8 in column {}", i + 1)))?;
        if name.trim().is_empty() {
            return Err(bad(format!("has an empty name in column {}", i + 1)));
        }
        if !seen.insert(name) {
            return Err(bad(format!("names column `{name}` twice")));
        }
        names.push(name.to_owned());
    }
    Ok(Some(Header { names, end: after.byte(), lines: after.line().saturating_sub(u64::from(ended_with_newline)) }))
}

/// Turn a dead letter's raw row (CSV text) back into a record, with the file's header.
pub(crate) fn decode_row(plan: &StreamPlan, opts: CsvOptions, raw: &str) -> Result<Value, Reject> {
    let fail = |reason: String| Reject { location: None, reason, path: None, raw: raw.to_owned(), drift: None };
    let file = std::fs::File::open(&plan.path)
        .map_err(|e| fail(format!("cannot open `{}` to read its header: {e}", plan.display)))?;
    let header = match read_header(plan, opts, &file, u64::MAX) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(fail(format!("`{}` has no header row", plan.display))),
        Err(e) => return Err(fail(e.report())),
    };
    let mut rdr = builder(opts).from_reader(raw.as_bytes());
    let mut rec = ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => row_to_object(&header.names, &fields(&rec), opts).map_err(fail),
        Ok(false) => Err(fail("empty row".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}

fn builder(opts: CsvOptions) -> ReaderBuilder {
    let mut b = ReaderBuilder::new();
    b.has_headers(false).flexible(true).delimiter(opts.delimiter).terminator(Terminator::Any(b'\n'));
    b
}

/// The record's fields, with the `\r` of a CRLF line end dropped from the last one.
fn fields(rec: &ByteRecord) -> Vec<&[u8]> {
    let n = rec.len();
    rec.iter().enumerate().map(|(i, f)| if i + 1 == n { f.strip_suffix(b"\r").unwrap_or(f) } else { f }).collect()
}

/// A blank CRLF line reads as one empty field (the reader itself skips empty `\n` lines).
fn is_blank(fields: &[&[u8]]) -> bool {
    fields.len() == 1 && fields[0].is_empty()
}

/// One row as an object `header → value`, or why it cannot be one.
fn row_to_object(names: &[String], fields: &[&[u8]], opts: CsvOptions) -> Result<Value, String> {
    if fields.len() != names.len() {
        const SHOWN: usize = 8;
        let mut list = names.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join(",");
        if names.len() > SHOWN {
            list.push_str(",...");
        }
        return Err(format!("expected {} fields ({list}), found {}", names.len(), fields.len()));
    }
    let mut obj = Map::new();
    for (name, f) in names.iter().zip(fields) {
        let v = if f.is_empty() && opts.empty_as_null {
            Value::Null
        } else {
            match std::str::from_utf8(f) {
                Ok(s) => Value::String(s.to_owned()),
                Err(_) => return Err(format!("invalid UTF-8 in column `{name}`")),
            }
        };
        obj.insert(name.clone(), v);
    }
    Ok(Value::Object(obj))
}

/// The fields re-encoded as one CSV row, without a line end.
fn encode_row(fields: &[&[u8]], opts: CsvOptions) -> String {
    let mut w =
        csv::WriterBuilder::new().delimiter(opts.delimiter).terminator(Terminator::Any(b'\n')).from_writer(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = w.write_record(fields);
    let bytes = w.into_inner().unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

fn csv_error(e: csv::Error, plan: &StreamPlan) -> Error {
    let message = format!("cannot read `{}`", plan.display);
    if !e.is_io_error() {
        return Error::permanent(message).with_source(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io_error(io, message),
        _ => Error::permanent(message),
    }
}
