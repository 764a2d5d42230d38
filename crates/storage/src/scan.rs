//! Buffered forward scanning of the batches in a segment file.

use std::io;

use crate::backend::BackendFile;
use crate::batch::{self, BatchHeader, HEADER_LEN};

/// Read size when only headers are needed.
const HEADER_CHUNK: usize = 16 * 1024;
/// Read size when whole batches are validated.
const VALIDATE_CHUNK: usize = 256 * 1024;

/// One step of a scan.
#[derive(Debug)]
pub(crate) enum Item {
    /// A batch at `pos`.
    Batch { pos: u64, header: BatchHeader },
    /// Clean end of the scanned range.
    End,
    /// An invalid or partial batch at `pos`.
    Bad { pos: u64, reason: String },
}

/// Iterates the batches of `file` in `[start, limit)` with few, large positional reads.
pub(crate) struct Scanner<'a> {
    file: &'a dyn BackendFile,
    limit: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    /// Size of the previous batch: after a large batch, read just the next header.
    last_total: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(file: &'a dyn BackendFile, start: u64, limit: u64) -> Self {
        Scanner {
            file,
            limit,
            pos: start,
            buf: Vec::new(),
            buf_start: 0,
            last_total: 0,
        }
    }

    /// Makes `[pos, pos + len)` available in the buffer; false if the file is shorter.
    fn ensure(&mut self, pos: u64, len: usize, chunk: usize) -> io::Result<bool> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if pos >= self.buf_start && pos + len as u64 <= have_end {
            return Ok(true);
        }
        let avail = usize::try_from(self.limit.saturating_sub(pos)).unwrap_or(usize::MAX);
        let want = len.max(chunk).min(avail);
        if want < len {
            return Ok(false);
        }
        self.buf.resize(want, 0);
        let n = self.file.read_full_at(&mut self.buf, pos)?;
        self.buf.truncate(n);
        self.buf_start = pos;
        Ok(n >= len)
    }

    fn slice(&self, pos: u64, len: usize) -> &[u8] {
        let from = usize::try_from(pos - self.buf_start).unwrap_or(usize::MAX);
        self.buf.get(from..from.saturating_add(len)).unwrap_or(&[])
    }

    /// Returns the next batch. Batches for which `validate(header)` is true are fully
    /// validated (CRC etc.); others only get their header checked.
    pub(crate) fn next(&mut self, validate: impl Fn(&BatchHeader) -> bool) -> io::Result<Item> {
        let pos = self.pos;
        if pos >= self.limit {
            return Ok(Item::End);
        }
        let bad = |reason: String| Ok(Item::Bad { pos, reason });
        if self.limit - pos < HEADER_LEN as u64 {
            return bad(format!("partial batch header ({} bytes)", self.limit - pos));
        }
        let chunk = if self.last_total > HEADER_CHUNK / 4 {
            HEADER_LEN
        } else {
            HEADER_CHUNK
        };
        if !self.ensure(pos, HEADER_LEN, chunk)? {
            return bad("partial batch header (short read)".into());
        }
        let header = match BatchHeader::parse(self.slice(pos, HEADER_LEN)) {
            Ok(h) => h,
            Err(e) => return bad(e.to_string()),
        };
        let total = header.total_len();
        if pos + total as u64 > self.limit {
            return bad(format!(
                "partial batch: {} of {total} bytes present",
                self.limit - pos
            ));
        }
        if validate(&header) {
            if !self.ensure(pos, total, VALIDATE_CHUNK)? {
                return bad("partial batch (short read)".into());
            }
            if let Err(e) = batch::validate_stored(self.slice(pos, total)) {
                return bad(e.to_string());
            }
        } else if header.records_count < 0 || header.last_offset_delta < 0 {
            return bad("negative record count or offset delta".into());
        }
        self.pos = pos + total as u64;
        self.last_total = total;
        Ok(Item::Batch { pos, header })
    }
}
