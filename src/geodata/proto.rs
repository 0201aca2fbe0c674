//! Just enough protobuf to walk v2ray's dat files from disk: varints,
//! field keys and length-delimited fields, read through a buffer with the
//! position kept, so a caller can skip a whole message by its length
//! (a seek, not a read) and every length is checked against the message
//! that holds it and the file's end. Anything that does not add up is an
//! error, never a panic.
//!
//! Neighbours: `site` and `ip` (the two messages read with it).

use std::fs::File;
use std::io::{BufReader, Read};

/// The wire types a dat file uses.
pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

/// A file read as protobuf, with the position in it.
pub struct Reader {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Reader {
    pub fn new(file: File) -> std::io::Result<Reader> {
        let len = file.metadata()?.len();
        Ok(Reader {
            inner: BufReader::with_capacity(32 * 1024, file),
            pos: 0,
            len,
        })
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("truncated at byte {}", self.pos)
            } else {
                e.to_string()
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    pub fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!(
            "a varint longer than 10 bytes at byte {}",
            self.pos
        ))
    }

    /// The next field's number and wire type, if `pos` is before `end`.
    pub fn key(&mut self, end: u64) -> Result<Option<(u64, u8)>, String> {
        if self.pos >= end {
            return Ok(None);
        }
        let k = self.varint()?;
        let wire = (k & 7) as u8;
        if ![VARINT, I64, LEN, I32].contains(&wire) {
            return Err(format!("unknown wire type {wire} at byte {}", self.pos));
        }
        Ok(Some((k >> 3, wire)))
    }

    /// A length-delimited field's length, checked to end by `end`; returns
    /// where it ends.
    pub fn len_end(&mut self, end: u64) -> Result<u64, String> {
        let n = self.varint()?;
        match self.pos.checked_add(n) {
            Some(e) if e <= end && e <= self.len => Ok(e),
            _ => Err(format!(
                "a length of {n} at byte {} runs past its message",
                self.pos
            )),
        }
    }

    /// Moves to `to` (forwards or back), within the file.
    pub fn seek_to(&mut self, to: u64) -> Result<(), String> {
        if to > self.len {
            return Err(format!("truncated: byte {to} is past the end"));
        }
        let delta = to as i64 - self.pos as i64;
        self.inner.seek_relative(delta).map_err(|e| e.to_string())?;
        self.pos = to;
        Ok(())
    }

    /// Skips a field of wire type `wire` ending by `end`.
    pub fn skip(&mut self, wire: u8, end: u64) -> Result<(), String> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 | I32 => {
                let n = if wire == I64 { 8 } else { 4 };
                if self.pos + n > end {
                    return Err(format!(
                        "a fixed field runs past its message at byte {}",
                        self.pos
                    ));
                }
                self.seek_to(self.pos + n)
            }
            _ => {
                let e = self.len_end(end)?;
                self.seek_to(e)
            }
        }
    }

    /// Reads bytes up to `end` into `buf` (replacing its contents).
    pub fn bytes_to(&mut self, end: u64, buf: &mut Vec<u8>) -> Result<(), String> {
        let n = (end - self.pos) as usize;
        buf.clear();
        buf.resize(n, 0);
        self.exact(buf)
    }

    /// A length-delimited field read whole, at most `max` bytes long.
    pub fn small_bytes(&mut self, end: u64, max: usize, buf: &mut Vec<u8>) -> Result<(), String> {
        let e = self.len_end(end)?;
        if (e - self.pos) as usize > max {
            return Err(format!(
                "a field of {} bytes at byte {} (at most {max} expected)",
                e - self.pos,
                self.pos
            ));
        }
        self.bytes_to(e, buf)
    }

    /// Finds the first top-level `entry` (field 1) whose `country_code`
    /// (its field 1) equals `name`, ignoring ASCII case, and returns where
    /// its body starts and ends. The other entries are skipped by their
    /// length; a category whose code is not its first field is read field by
    /// field to find the code. Also returns the codes seen, for "no such
    /// category" errors (only when not found).
    pub fn find_entry(&mut self, name: &str) -> Result<Result<(u64, u64), Vec<String>>, String> {
        let mut seen = Vec::new();
        let mut code = Vec::new();
        let file_end = self.len;
        while let Some((field, wire)) = self.key(file_end)? {
            if field != 1 || wire != LEN {
                self.skip(wire, file_end)?;
                continue;
            }
            let end = self.len_end(file_end)?;
            let start = self.pos;
            let mut found = None;
            while let Some((f, w)) = self.key(end)? {
                if f == 1 && w == LEN {
                    self.small_bytes(end, 1024, &mut code)?;
                    found = Some(String::from_utf8_lossy(&code).into_owned());
                    break;
                }
                self.skip(w, end)?;
            }
            let code = found.unwrap_or_default();
            if code.eq_ignore_ascii_case(name) {
                self.seek_to(start)?;
                return Ok(Ok((start, end)));
            }
            if seen.len() < 4096 {
                seen.push(code);
            }
            self.seek_to(end)?;
        }
        Ok(Err(seen))
    }
}
