//! A [`Footer`] as bytes, for the footer cache on disk
//! (`workspace::disk`): what a workspace read of the file gave (row
//! counts, column facts, the summary located, its state's decoded bytes),
//! so that a later process can merge the file without opening it.
//!
//! Only what decodes back to the same `Footer` exactly is kept: footers
//! without a summary, and summaries with n4a's binary state (1.2 on). A
//! 1.0 or 1.1 summary (decoded from its JSON) is not cached: it is read
//! from the file each time. A summary text held in memory is stored
//! whole and, decoded, is a slice of the cache's bytes (no copy); a large
//! text left in the file stays there (relayed from it, checked against
//! its hash, as after any footer read).
//!
//! Cost: encoding is a copy of the state and the held text; decoding
//! copies nothing of either (both are slices of the cache's bytes).

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;

use super::{
    ColumnFacts, Content, FileSummary, Footer, MetricFact, RunsSource, ScoreFact, StateSource,
    TextSource,
};
use crate::footer::FileKey;
use crate::summary::codec::{put_of, put_s, put_u, CodecError, Cur, Encoded, RunsRef, TextCheck};

/// Whether `footer` is one this cache keeps (see the module docs): what
/// [`encode`] says, without encoding.
pub(crate) fn keeps(footer: &Footer) -> bool {
    footer.summary.is_none() || footer.has_packed_state()
}

/// Appends `footer`'s bytes to `out`; false (nothing appended) when the
/// footer is not one this cache keeps (see the module docs).
pub(crate) fn encode(footer: &Footer, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    put_u(out, footer.num_rows);
    put_u(out, footer.num_row_groups as u64);
    put_facts(out, &footer.columns);
    let Some(s) = &footer.summary else {
        out.push(0);
        return true;
    };
    let Content::State(st) = &s.content else {
        out.truncate(start);
        return false;
    };
    let Some(packed) = &st.packed else {
        out.truncate(start);
        return false;
    };
    out.push(1);
    put_s(out, &s.version);
    for v in [st.rows, st.n_runs, st.n_pipelines] {
        put_u(out, v);
    }
    put_bytes(out, packed.decoded());
    match &st.runs {
        None => out.push(0),
        Some(RunsSource::InFile(at, len)) => {
            out.push(1);
            put_u(out, *at);
            put_u(out, *len as u64);
        }
        Some(RunsSource::Held(v)) => {
            out.push(2);
            put_bytes(out, v);
        }
        Some(RunsSource::Body(r)) => {
            out.push(3);
            for v in [r.at, r.len, r.hash] {
                put_u(out, v);
            }
        }
    }
    match &s.text {
        TextSource::Held { text, runs_at } => {
            out.push(0);
            put_opt_u(out, runs_at.map(|a| a as u64));
            put_bytes(out, text);
        }
        TextSource::InFile {
            offset,
            check,
            verified,
        } => {
            out.push(1);
            for v in [*offset, check.len, check.hash] {
                put_u(out, v);
            }
            put_opt_u(out, check.runs_at);
            out.push(u8::from(
                verified.load(std::sync::atomic::Ordering::Relaxed),
            ));
        }
    }
    true
}

/// The footer of `path` (version `key`) from bytes [`encode`] wrote;
/// held texts are slices of `rec`.
///
/// # Errors
/// [`CodecError`] on bytes that do not decode (the cache file is checked
/// whole by its hash first, so only a bug gets here).
pub(crate) fn decode(path: &Path, key: FileKey, rec: &Bytes) -> Result<Footer, CodecError> {
    let mut c = Cur::new(rec);
    let num_rows = c.u()?;
    let num_row_groups = usize::try_from(c.u()?).map_err(|_| bad("row groups"))?;
    let columns = get_facts(&mut c)?;
    let summary = match c.byte()? {
        0 => None,
        1 => {
            let version = c.s()?.to_string();
            let (rows, n_runs, n_pipelines) = (c.u()?, c.u()?, c.u()?);
            let n = c.len()?;
            let at = c.pos();
            c.take(n)?;
            let packed = Encoded::from_decoded(rec.slice(at..at + n))?;
            let runs = match c.byte()? {
                0 => None,
                1 => Some(RunsSource::InFile(c.u()?, c.u()? as usize)),
                2 => {
                    let n = c.len()?;
                    Some(RunsSource::Held(c.take(n)?.to_vec()))
                }
                3 => Some(RunsSource::Body(RunsRef {
                    at: c.u()?,
                    len: c.u()?,
                    hash: c.u()?,
                })),
                _ => return Err(bad("runs tag")),
            };
            let text = match c.byte()? {
                0 => {
                    let runs_at = get_opt_u(&mut c)?.map(|a| a as usize);
                    let n = c.len()?;
                    let at = c.pos();
                    c.take(n)?;
                    TextSource::Held {
                        text: rec.slice(at..at + n),
                        runs_at,
                    }
                }
                1 => {
                    let (offset, len, hash) = (c.u()?, c.u()?, c.u()?);
                    let runs_at = get_opt_u(&mut c)?;
                    TextSource::InFile {
                        offset,
                        check: TextCheck { len, hash, runs_at },
                        verified: (c.byte()? == 1).into(),
                    }
                }
                _ => return Err(bad("text tag")),
            };
            Some(FileSummary {
                version,
                text,
                content: Content::State(StateSource::packed(
                    (rows, n_runs, n_pipelines),
                    packed,
                    runs,
                )),
            })
        }
        _ => return Err(bad("summary tag")),
    };
    if c.pos() != rec.len() {
        return Err(bad("bytes left over"));
    }
    Ok(Footer {
        path: path.to_path_buf(),
        num_rows,
        num_row_groups,
        key,
        columns,
        summary,
        meta: OnceLock::new(),
    })
}

fn bad(what: &str) -> CodecError {
    CodecError(format!("cached footer: bad {what}"))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_opt_u(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            put_u(out, v);
        }
        None => out.push(0),
    }
}

fn get_opt_u(c: &mut Cur<'_>) -> Result<Option<u64>, CodecError> {
    match c.byte()? {
        0 => Ok(None),
        1 => c.u().map(Some),
        _ => Err(bad("option tag")),
    }
}

fn put_facts(out: &mut Vec<u8>, f: &ColumnFacts) {
    match &f.metric {
        MetricFact::Unknown => out.push(0),
        MetricFact::None => out.push(1),
        MetricFact::One { name, rows } => {
            out.push(2);
            put_s(out, name);
            put_u(out, *rows);
        }
    }
    for s in &f.scores {
        match s {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_u(out, s.non_null);
                put_of(out, s.min);
                put_of(out, s.max);
            }
        }
    }
}

fn get_facts(c: &mut Cur<'_>) -> Result<ColumnFacts, CodecError> {
    let metric = match c.byte()? {
        0 => MetricFact::Unknown,
        1 => MetricFact::None,
        2 => MetricFact::One {
            name: c.s()?.to_string(),
            rows: c.u()?,
        },
        _ => return Err(bad("metric tag")),
    };
    let mut scores = [None; 3];
    for s in &mut scores {
        *s = match c.byte()? {
            0 => None,
            1 => Some(ScoreFact {
                non_null: c.u()?,
                min: c.of()?,
                max: c.of()?,
            }),
            _ => return Err(bad("score tag")),
        };
    }
    Ok(ColumnFacts { metric, scores })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every footer kind a workspace reads either round-trips to the same
    /// merge inputs or is refused (never decoded differently).
    #[test]
    fn footers_round_trip_or_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        crate::generate::generate(
            dir.path(),
            &crate::generate::GenOptions {
                datasets: 1,
                rows: 40,
                ..Default::default()
            },
        )
        .unwrap();
        let p = dir.path().join("corn_000.meta.parquet");
        let f = Footer::read(&p).unwrap();
        let mut out = Vec::new();
        assert!(encode(&f, &mut out));
        let back = decode(&p, f.key, &Bytes::from(out.clone())).unwrap();
        assert_eq!(back.num_rows, f.num_rows);
        assert_eq!(back.num_row_groups, f.num_row_groups);
        assert_eq!(back.columns, f.columns);
        assert_eq!(back.version(), f.version());
        assert_eq!(
            back.state_head().map(|s| s.rows),
            f.state_head().map(|s| s.rows)
        );
        let mut again = Vec::new();
        assert!(encode(&back, &mut again));
        assert_eq!(again, out, "decode(encode(f)) encodes to the same bytes");
        // Any cut of the record is refused, never read as another footer.
        for cut in 0..out.len() {
            assert!(decode(&p, f.key, &Bytes::from(out[..cut].to_vec())).is_err());
        }
        let mut facts = Vec::new();
        let one = ColumnFacts {
            metric: MetricFact::One {
                name: "rmse".into(),
                rows: 7,
            },
            scores: [
                Some(ScoreFact {
                    non_null: 3,
                    min: Some(-1.5),
                    max: None,
                }),
                None,
                Some(ScoreFact {
                    non_null: 0,
                    min: None,
                    max: None,
                }),
            ],
        };
        put_facts(&mut facts, &one);
        assert_eq!(get_facts(&mut Cur::new(&facts)).unwrap(), one);
    }
}
