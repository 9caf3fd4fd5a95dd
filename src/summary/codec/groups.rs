//! 1.5's group aggregates as bytes (`"N4G1"`): per cell its metric and
//! partition (optional strings), total, models and folds; each aggregate
//! its count and, per score, the finite count and, when any, sum, min,
//! max and closest to zero. The head's varints, strings and floats.

use super::read::Cur;
use super::write::{put_f, put_os, put_u};
use super::{bad, R};
use crate::summary::groups::{Agg, Cell, Groups};
use std::collections::BTreeMap;

const MAGIC: &[u8; 4] = b"N4G1";

fn put_agg(out: &mut Vec<u8>, a: &Agg) {
    put_u(out, a.count);
    for s in &a.scores {
        put_u(out, s.n);
        if s.n > 0 {
            for v in [s.sum, s.min, s.max, s.zero] {
                put_f(out, v);
            }
        }
    }
}

/// The bytes of `g` stored in the file's body. O(keys).
pub(super) fn encode(g: &Groups) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    put_u(&mut out, g.cells.len() as u64);
    for ((metric, part), c) in &g.cells {
        put_os(&mut out, metric.as_deref());
        put_os(&mut out, part.as_deref());
        put_agg(&mut out, &c.total);
        for map in [&c.models, &c.folds] {
            put_u(&mut out, map.len() as u64);
            for (k, a) in map {
                put_os(&mut out, k.as_deref());
                put_agg(&mut out, a);
            }
        }
    }
    out
}

fn get_agg(c: &mut Cur<'_>) -> R<Agg> {
    let mut a = Agg {
        count: c.u()?,
        ..Agg::default()
    };
    for s in &mut a.scores {
        s.n = c.u()?;
        if s.n > 0 {
            s.sum = c.f()?;
            s.min = c.f()?;
            s.max = c.f()?;
            s.zero = c.f()?;
        }
    }
    Ok(a)
}

/// Decodes [`encode`]'s bytes. O(bytes).
pub(super) fn decode(bytes: &[u8]) -> R<Groups> {
    let mut c = Cur { buf: bytes, pos: 0 };
    if c.take(4)? != MAGIC {
        return bad("no N4G1 magic");
    }
    let own = |s: Option<&str>| s.map(str::to_string);
    let mut g = Groups::default();
    for _ in 0..c.len()? {
        let metric = own(c.os()?);
        let part = own(c.os()?);
        let total = get_agg(&mut c)?;
        let mut maps = [BTreeMap::new(), BTreeMap::new()];
        for map in &mut maps {
            for _ in 0..c.len()? {
                let k = own(c.os()?);
                map.insert(k, get_agg(&mut c)?);
            }
        }
        let [models, folds] = maps;
        g.cells.insert(
            (metric, part),
            Cell {
                total,
                models,
                folds,
            },
        );
    }
    if c.pos != bytes.len() {
        return bad("bytes after the group aggregates");
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::groups::GroupsBuilder;

    #[test]
    fn groups_round_trip_and_refuse_damaged_bytes() {
        let mut b = GroupsBuilder::from_groups(Some(&Groups::default()));
        b.add(
            Some("mse"),
            Some("val"),
            Some("PLS"),
            Some("0"),
            &[Some(1.0), None, Some(f64::NAN)],
        );
        b.add(Some("mse"), None, None, None, &[None, None, None]);
        b.add(
            None,
            Some("test"),
            Some("RF"),
            None,
            &[Some(-4.0), Some(f64::INFINITY), None],
        );
        let g = b.groups().unwrap();
        let bytes = encode(&g);
        assert_eq!(decode(&bytes).unwrap(), g);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(b"N4G2\x00").is_err());
    }
}
