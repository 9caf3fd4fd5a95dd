//! The Thrift compact protocol, read: a bounds-checked cursor over the
//! footer bytes (varints, zigzag, field headers, skipping of any value to a
//! bounded depth).

use super::{SkimError, R};

pub(super) const MAX_DEPTH: u32 = 32;

/// A position in the footer bytes; every read checks the bytes left.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn byte(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or(SkimError("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(super) fn varint(&mut self) -> R<u64> {
        // Field ids, lengths and most values fit in one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let mut out = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(SkimError("varint too long"))
    }

    pub(super) fn zigzag(&mut self) -> R<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    pub(super) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(SkimError("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(SkimError("unexpected end"))?;
        self.pos = end;
        Ok(s)
    }

    pub(super) fn binary(&mut self) -> R<&'a [u8]> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| SkimError("length overflow"))?)
    }

    /// Reads a field header; `None` at the struct's stop.
    pub(super) fn field(&mut self, last: &mut i16) -> R<Option<(i16, u8)>> {
        let b = self.byte()?;
        let ty = b & 0x0f;
        if ty == 0 {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| SkimError("field id"))?
        } else {
            last.checked_add(i16::from(delta))
                .ok_or(SkimError("field id"))?
        };
        *last = id;
        Ok(Some((id, ty)))
    }

    pub(super) fn list_header(&mut self) -> R<(usize, u8)> {
        let b = self.byte()?;
        let size = match b >> 4 {
            15 => usize::try_from(self.varint()?).map_err(|_| SkimError("list size"))?,
            n => usize::from(n),
        };
        // Each element takes at least one byte.
        if size > self.buf.len() - self.pos {
            return Err(SkimError("list longer than the footer"));
        }
        Ok((size, b & 0x0f))
    }

    /// Skips a varint without decoding it.
    #[inline]
    pub(super) fn skip_varint(&mut self) -> R<()> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.iter().take(10).position(|b| b & 0x80 == 0) {
            Some(i) => {
                self.pos += i + 1;
                Ok(())
            }
            None => Err(SkimError("varint too long or cut")),
        }
    }

    pub(super) fn skip(&mut self, ty: u8, depth: u32) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(SkimError("nesting too deep"));
        }
        match ty {
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.skip_varint(),
            7 => self.take(8).map(drop),
            8 => self.binary().map(drop),
            9 | 10 => {
                let (n, et) = self.list_header()?;
                match et {
                    // Lists of integers (encodings, histograms): varints.
                    4..=6 => (0..n).try_for_each(|_| self.skip_varint()),
                    _ => (0..n).try_for_each(|_| self.skip_elem(et, depth + 1)),
                }
            }
            11 => {
                let n = usize::try_from(self.varint()?).map_err(|_| SkimError("map size"))?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip_elem(kv >> 4, depth + 1)?;
                    self.skip_elem(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.skip_struct(depth),
            _ => Err(SkimError("unknown type")),
        }
    }

    /// Skips a struct's fields to its stop byte: field ids are not needed,
    /// only each field's type (most of a footer is skipped this way).
    pub(super) fn skip_struct(&mut self, depth: u32) -> R<()> {
        loop {
            let b = self.byte()?;
            let ty = b & 0x0f;
            if ty == 0 {
                return Ok(());
            }
            if b >> 4 == 0 {
                // A long-form header: the field id follows as a varint.
                self.skip_varint()?;
            }
            self.skip(ty, depth + 1)?;
        }
    }

    /// Booleans inside collections take one byte each.
    pub(super) fn skip_elem(&mut self, ty: u8, depth: u32) -> R<()> {
        if ty == 1 || ty == 2 {
            self.byte().map(drop)
        } else {
            self.skip(ty, depth)
        }
    }
}
