//! The progress line of long commands (`gen`, `ingest`, `refresh`) on
//! stderr: count, total when known, rate and time left, redrawn at most ten
//! times a second, cleared at the end. Drawn only when stderr is a terminal
//! and `--quiet` was not given, so pipes and logs stay clean.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One progress line.
pub struct Progress {
    enabled: bool,
    label: &'static str,
    unit: &'static str,
    total: Option<u64>,
    state: Mutex<State>,
}

struct State {
    done: u64,
    extra: String,
    started: Instant,
    drawn: Instant,
}

impl Progress {
    /// A line for `label`, counting `unit`s out of `total` when known;
    /// drawn when stderr is a terminal unless `quiet`.
    pub fn new(label: &'static str, unit: &'static str, total: Option<u64>, quiet: bool) -> Self {
        let now = Instant::now();
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            label,
            unit,
            total,
            state: Mutex::new(State {
                done: 0,
                extra: String::new(),
                started: now,
                drawn: now - Duration::from_secs(1),
            }),
        }
    }

    /// Counts `n` more, with `extra` shown after the count when given.
    pub fn add(&self, n: u64, extra: Option<String>) {
        if !self.enabled {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done += n;
        if let Some(x) = extra {
            s.extra = x;
        }
        let last = self.total.is_some_and(|t| s.done >= t);
        if !last && s.drawn.elapsed() < Duration::from_millis(100) {
            return;
        }
        s.drawn = Instant::now();
        let secs = s.started.elapsed().as_secs_f64().max(1e-3);
        let rate = s.done as f64 / secs;
        let mut line = match self.total {
            Some(t) => {
                let left = (t.saturating_sub(s.done)) as f64 / rate.max(1e-9);
                format!(
                    "{} {}/{t} {} ({:.0}%), {:.0} {}/s, {:.0} s left",
                    self.label,
                    s.done,
                    self.unit,
                    s.done as f64 * 100.0 / t.max(1) as f64,
                    rate,
                    self.unit,
                    left
                )
            }
            None => format!(
                "{} {} {}, {:.0} {}/s, {:.1} s",
                self.label, s.done, self.unit, rate, self.unit, secs
            ),
        };
        if !s.extra.is_empty() {
            line.push_str(", ");
            line.push_str(&s.extra);
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
