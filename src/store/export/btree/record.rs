//! SQLite's record format (fileformat2, "Record Format"): a row's values
//! as the bytes of a cell's payload, with the varints and serial types
//! SQLite reads back.

/// A value of a record, as SQLite's record format stores it. A `NaN` real
/// is stored as NULL, as SQLite stores a bound `NaN`.
#[derive(Debug, Clone, Copy)]
pub(in crate::store::export) enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

impl Value<'_> {
    /// An optional text.
    pub(in crate::store::export) fn text(v: Option<&str>) -> Value<'_> {
        v.map_or(Value::Null, Value::Text)
    }

    /// An optional integer.
    pub(in crate::store::export) fn int(v: Option<i64>) -> Value<'static> {
        v.map_or(Value::Null, Value::Int)
    }

    /// An optional real (`NaN` is NULL).
    pub(in crate::store::export) fn real(v: Option<f64>) -> Value<'static> {
        match v {
            Some(x) if !x.is_nan() => Value::Real(x),
            _ => Value::Null,
        }
    }

    pub(super) fn serial(&self) -> (u64, usize) {
        match *self {
            Value::Null => (0, 0),
            Value::Int(0) => (8, 0),
            Value::Int(1) => (9, 0),
            Value::Int(i) => int_size(i),
            Value::Real(x) if x.is_nan() => (0, 0),
            Value::Real(_) => (7, 8),
            Value::Text(s) => (2 * s.len() as u64 + 13, s.len()),
        }
    }

    pub(super) fn body(&self, out: &mut Vec<u8>) {
        match *self {
            Value::Null | Value::Int(0 | 1) => {}
            Value::Int(i) => {
                let n = int_size(i).1;
                out.extend_from_slice(&i.to_be_bytes()[8 - n..]);
            }
            Value::Real(x) if x.is_nan() => {}
            Value::Real(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
            Value::Text(s) => out.extend_from_slice(s.as_bytes()),
        }
    }
}

/// An integer's serial type and byte count: the smallest that holds it.
pub(super) fn int_size(i: i64) -> (u64, usize) {
    if i8::try_from(i).is_ok() {
        (1, 1)
    } else if i16::try_from(i).is_ok() {
        (2, 2)
    } else if (-(1 << 23)..(1 << 23)).contains(&i) {
        (3, 3)
    } else if i32::try_from(i).is_ok() {
        (4, 4)
    } else if (-(1 << 47)..(1 << 47)).contains(&i) {
        (5, 6)
    } else {
        (6, 8)
    }
}

pub(super) fn varint_len(v: u64) -> usize {
    if v > 0x00ff_ffff_ffff_ffff {
        return 9;
    }
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// SQLite's varint: big-endian groups of 7 bits, the ninth byte whole.
pub(super) fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v <= 0x7f {
        out.push(v as u8);
        return;
    }
    let mut buf = [0u8; 9];
    if v > 0x00ff_ffff_ffff_ffff {
        buf[8] = v as u8;
        let mut w = v >> 8;
        for b in buf[..8].iter_mut().rev() {
            *b = (w & 0x7f) as u8 | 0x80;
            w >>= 7;
        }
        out.extend_from_slice(&buf);
        return;
    }
    let n = varint_len(v);
    let mut w = v;
    for i in (0..n).rev() {
        buf[i] = (w & 0x7f) as u8 | if i + 1 < n { 0x80 } else { 0 };
        w >>= 7;
    }
    out.extend_from_slice(&buf[..n]);
}

/// `values` as one record (header of serial types, then the bodies) into
/// `out`, which is cleared first.
pub(super) fn record(out: &mut Vec<u8>, values: &[Value<'_>]) {
    out.clear();
    let types: usize = values.iter().map(|v| varint_len(v.serial().0)).sum();
    let mut header = types + 1;
    while types + varint_len(header as u64) != header {
        header = types + varint_len(header as u64);
    }
    put_varint(out, header as u64);
    for v in values {
        put_varint(out, v.serial().0);
    }
    for v in values {
        v.body(out);
    }
}
