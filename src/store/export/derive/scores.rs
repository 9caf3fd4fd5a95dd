//! A row's `scores` JSON read for its chain's `cv_scores`: the object
//! under the row's partition (or the whole object), each metric's number,
//! in one pass with keys borrowed from the text; the general parse as the
//! fallback and the tests' oracle.

/// Adds one row's `scores` to its partition's per-metric sums, as
/// nirs4all's bulk update does: the object under the row's partition (or
/// the whole object), every number (booleans count, as Python's `int`).
/// A text that is not a JSON object adds nothing (nirs4all skips it too).
pub(super) fn add_cv_scores(sums: &mut Vec<(String, f64, u64)>, text: &str, partition: &str) {
    let clean = crate::summary::json::sanitize_non_finite(text);
    // One pass: keys borrowed from the text, the partition's object read
    // where it stands, values left unparsed but the ones added (no tree
    // of values built: most of an export's JSON time). A key with an
    // escape cannot be borrowed: such a text takes the general parse,
    // which gives the same sums. A number out of f64's range is skipped
    // alone (the general parse would drop the text).
    let mut de = serde_json::Deserializer::from_str(&clean);
    let metrics = match serde::de::DeserializeSeed::deserialize(scan::Top { partition }, &mut de)
        .and_then(|found| de.end().map(|()| found))
    {
        Ok(scan::Found::Partition(Some(m)) | scan::Found::Flat(m)) => m,
        Ok(scan::Found::Partition(None)) => return,
        Err(_) => return add_cv_scores_parsed(sums, &clean, partition),
    };
    for (metric, v) in metrics {
        let v = v.get();
        let x = match v {
            "true" => Some(1.0),
            "false" => Some(0.0),
            _ if v.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                serde_json::from_str::<f64>(v).ok()
            }
            _ => None,
        };
        if let Some(x) = x {
            add(sums, metric, x);
        }
    }
}

/// Adds `x` to `metric`'s sum and count (a new metric goes last).
fn add(sums: &mut Vec<(String, f64, u64)>, metric: &str, x: f64) {
    match sums.iter_mut().find(|(m, ..)| m == metric) {
        Some(e) => {
            e.1 += x;
            e.2 += 1;
        }
        None => sums.push((metric.to_string(), x, 1)),
    }
}

/// The one-pass reading of a row's `scores` for [`add_cv_scores`]: the
/// object under the row's partition, else the whole object, as
/// `(key, raw value)` pairs in key order, a repeated key's last value
/// kept (what a parse into a `BTreeMap` gives).
mod scan {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;
    use std::fmt;

    pub(super) type Pairs<'a> = Vec<(&'a str, &'a RawValue)>;

    pub(super) enum Found<'a> {
        /// The partition's key was there: its object, `None` when its
        /// value is not an object (nothing is added then).
        Partition(Option<Pairs<'a>>),
        /// No key of the partition: the whole object.
        Flat(Pairs<'a>),
    }

    /// Sorted by key, a repeated key's last value kept.
    fn last_wins(mut v: Pairs<'_>) -> Pairs<'_> {
        v.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: Pairs<'_> = Vec::with_capacity(v.len());
        for (k, r) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = r,
                _ => out.push((k, r)),
            }
        }
        out
    }

    fn pairs<'de, A: MapAccess<'de>>(mut m: A) -> Result<Pairs<'de>, A::Error> {
        let mut v = Vec::new();
        while let Some(k) = m.next_key::<&'de str>()? {
            v.push((k, m.next_value::<&'de RawValue>()?));
        }
        Ok(last_wins(v))
    }

    pub(super) struct Top<'p> {
        pub(super) partition: &'p str,
    }

    impl<'de> DeserializeSeed<'de> for Top<'_> {
        type Value = Found<'de>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found<'de>, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Top<'_> {
        type Value = Found<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Found<'de>, A::Error> {
            let mut flat = Vec::new();
            let mut inner = None;
            while let Some(k) = m.next_key::<&'de str>()? {
                if k == self.partition {
                    inner = Some(m.next_value::<ObjectOrNot<'de>>()?.0);
                } else {
                    flat.push((k, m.next_value::<&'de RawValue>()?));
                }
            }
            Ok(match inner {
                Some(i) => Found::Partition(i),
                None => Found::Flat(last_wins(flat)),
            })
        }
    }

    /// A value that is an object (its pairs) or anything else (`None`).
    struct ObjectOrNot<'a>(Option<Pairs<'a>>);

    impl<'de> serde::Deserialize<'de> for ObjectOrNot<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ObjectOrNotVisitor)
        }
    }

    struct ObjectOrNotVisitor;

    impl<'de> Visitor<'de> for ObjectOrNotVisitor {
        type Value = ObjectOrNot<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
            pairs(m).map(|p| ObjectOrNot(Some(p)))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
            while s.next_element::<IgnoredAny>()?.is_some() {}
            Ok(ObjectOrNot(None))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(ObjectOrNot(None))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(ObjectOrNot(None))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(ObjectOrNot(None))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(ObjectOrNot(None))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(ObjectOrNot(None))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(ObjectOrNot(None))
        }
    }
}

/// [`add_cv_scores`] through a whole `serde_json::Value`.
pub(super) fn add_cv_scores_parsed(
    sums: &mut Vec<(String, f64, u64)>,
    clean: &str,
    partition: &str,
) {
    let Ok(serde_json::Value::Object(all)) = serde_json::from_str(clean) else {
        return;
    };
    let inner = match all.get(partition) {
        Some(serde_json::Value::Object(o)) => o,
        Some(_) => return,
        None => &all,
    };
    for (metric, v) in inner {
        let x = match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        };
        if let Some(x) = x {
            add(sums, metric, x);
        }
    }
}
