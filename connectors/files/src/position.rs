//! The byte-offset position of a file stream, and opening a file at it.
//!
//! A position is `{ "offset", "line", "prefix_len", "prefix_hash" }`: the byte offset to
//! continue from, the lines consumed before it, and the xxh3-64 hash of the file's first
//! `min(offset, 4096)` bytes. On resume the hash tells whether the file is still the one the
//! position was taken in; a replaced or truncated file restarts at 0 (the engine's ledger
//! absorbs the re-read). A position that does not decode is a permanent error, never a guess.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use dovetail_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::StreamPlan;

/// How many leading bytes of the file the position's fingerprint covers.
pub(crate) const PREFIX_MAX: u64 = 4096;

/// Capacity of the buffered readers over a file.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// Where a file stream continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Position {
    /// Byte offset of the next unread line.
    pub offset: u64,
    /// Lines consumed before `offset` (the next line is `line + 1`).
    pub line: u64,
    /// Bytes the fingerprint covers: `min(offset, 4096)`.
    pub prefix_len: u64,
    /// xxh3-64 of the first `prefix_len` bytes, 16 lowercase hex digits.
    pub prefix_hash: String,
}

impl Position {
    /// Decode a position handed back by the engine; anything else is a permanent error.
    pub(crate) fn decode(stream: &str, v: &Value) -> Result<Position, Error> {
        let corrupt =
            |why: String| Error::permanent(format!("corrupt checkpoint for stream `{stream}`: {why} (position {v})"));
        let p: Position = serde_json::from_value(v.clone()).map_err(|e| corrupt(e.to_string()))?;
        if p.prefix_len != p.offset.min(PREFIX_MAX) {
            return Err(corrupt(format!("prefix_len {} does not match offset {}", p.prefix_len, p.offset)));
        }
        if p.prefix_hash.len() != 16 || !p.prefix_hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(corrupt("prefix_hash is not 16 lowercase hex digits".into()));
        }
        if p.line > p.offset {
            return Err(corrupt(format!("{} lines cannot fit in {} bytes", p.line, p.offset)));
        }
        Ok(p)
    }

    /// The position as the JSON the engine stores.
    pub(crate) fn to_value(&self) -> Value {
        serde_json::json!({
            "offset": self.offset,
            "line": self.line,
            "prefix_len": self.prefix_len,
            "prefix_hash": self.prefix_hash,
        })
    }
}

/// xxh3-64 of `bytes` as 16 lowercase hex digits.
pub(crate) fn prefix_hash(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// A stream's file opened for one read: where to start, and where the readable window ends.
pub(crate) struct Opened {
    /// The open file, seeked to `offset`.
    pub file: File,
    /// The file's first `min(len, 4096)` bytes when it was opened.
    head: Vec<u8>,
    /// Byte offset the read starts at.
    pub offset: u64,
    /// Lines consumed before `offset`.
    pub line: u64,
    /// End of the readable window: the file length, or in follow mode the end of the last
    /// complete line.
    pub end: u64,
    /// Whether the byte before `end` is a newline (an empty window counts as ending in one).
    pub ends_with_newline: bool,
}

impl Opened {
    /// Open the stream's file, check `from` against it, and settle the window.
    pub(crate) fn open(plan: &StreamPlan, from: Option<Position>) -> Result<Opened, Error> {
        let mut file = File::open(&plan.path).map_err(|e| {
            let message = format!("cannot open `{}` ({})", plan.display, plan.path.display());
            // A file that is not there is the config's `path` (as `check` says), not a failure
            // of the file system.
            match e.kind() {
                io::ErrorKind::NotFound => Error::new(ErrorKind::Config, message).with_source(e),
                _ => io_error(e, message),
            }
        })?;
        let read_err = |e| io_error(e, format!("cannot read `{}`", plan.display));
        let len = file.metadata().map_err(read_err)?.len();
        let mut head = Vec::with_capacity(len.min(PREFIX_MAX) as usize);
        (&file).take(PREFIX_MAX).read_to_end(&mut head).map_err(read_err)?;
        if let Some(encoding) = utf16(&head) {
            // Every line would be a dead letter of NUL bytes: say what the file is instead.
            return Err(Error::data(format!(
                "`{}` is {encoding} (it starts with a byte order mark); dovetail reads UTF-8 files: convert it, e.g. `iconv -f {encoding} -t UTF-8`",
                plan.display
            )));
        }
        let (offset, line) = match from {
            None => (0, 0),
            Some(p) if p.offset > len => {
                tracing::warn!(stream = %plan.name, file = %plan.display, offset = p.offset, len, "file is shorter than the checkpoint (truncated or replaced); reading it again from the start");
                (0, 0)
            }
            Some(p)
                if head.get(..p.prefix_len as usize).map(prefix_hash).as_deref() != Some(p.prefix_hash.as_str()) =>
            {
                tracing::warn!(stream = %plan.name, file = %plan.display, offset = p.offset, "file's beginning changed since the checkpoint (replaced); reading it again from the start");
                (0, 0)
            }
            Some(p) => (p.offset, p.line),
        };
        let end = if plan.follow { complete_lines_end(&mut file, offset, len).map_err(read_err)? } else { len };
        let ends_with_newline = end == offset || last_byte(&mut file, end).map_err(read_err)? == b'\n';
        file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
        Ok(Opened { file, head, offset, line, end, ends_with_newline })
    }

    /// The position at `offset` after `line` lines, in this file.
    pub(crate) fn position(&mut self, offset: u64, line: u64) -> Result<Position, Error> {
        let prefix_len = offset.min(PREFIX_MAX);
        if (self.head.len() as u64) < prefix_len {
            // The file grew past the head read at open; read the head again.
            self.head.clear();
            self.file.seek(SeekFrom::Start(0))?;
            (&self.file).take(PREFIX_MAX).read_to_end(&mut self.head)?;
            if (self.head.len() as u64) < prefix_len {
                return Err(Error::transient("file shrank while it was being read"));
            }
        }
        Ok(Position { offset, line, prefix_len, prefix_hash: prefix_hash(&self.head[..prefix_len as usize]) })
    }
}

/// End of the last complete line (just past its `\n`) in `from..len`, or `from` if there is none.
pub(crate) fn complete_lines_end(file: &mut File, from: u64, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 8192];
    let mut end = len;
    while end > from {
        let n = (end - from).min(buf.len() as u64) as usize;
        let start = end - n as u64;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

fn last_byte(file: &mut File, end: u64) -> io::Result<u8> {
    let mut b = [0u8; 1];
    file.seek(SeekFrom::Start(end - 1))?;
    file.read_exact(&mut b)?;
    Ok(b[0])
}

/// An IO error with a message naming the file, of the kind [`dovetail_core::io_kind`] says.
pub(crate) fn io_error(e: io::Error, message: String) -> Error {
    Error::new(dovetail_core::io_kind(&e), message).with_source(e)
}

/// The UTF-16 encoding a file's byte order mark names, if it starts with one.
fn utf16(head: &[u8]) -> Option<&'static str> {
    match head {
        [0xFF, 0xFE, ..] => Some("UTF-16LE"),
        [0xFE, 0xFF, ..] => Some("UTF-16BE"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_it_encodes_and_rejects_other_shapes() {
        let p = Position { offset: 10, line: 2, prefix_len: 10, prefix_hash: prefix_hash(b"0123456789") };
        assert_eq!(Position::decode("s", &p.to_value()).unwrap(), p);
        for bad in [
            json!("12"),
            json!({"offset": 10}),
            json!({"offset": -1, "line": 0, "prefix_len": 0, "prefix_hash": "0000000000000000"}),
            json!({"offset": 10, "line": 2, "prefix_len": 4, "prefix_hash": p.prefix_hash}),
            json!({"offset": 10, "line": 2, "prefix_len": 10, "prefix_hash": "xyz"}),
            json!({"offset": 10, "line": 2, "prefix_len": 10, "prefix_hash": p.prefix_hash, "extra": 1}),
        ] {
            let e = Position::decode("orders", &bad).unwrap_err();
            assert_eq!(*e.kind(), ErrorKind::Permanent, "{bad}");
            assert!(e.message().starts_with("corrupt checkpoint for stream `orders`: "), "{}", e.message());
        }
    }
}
