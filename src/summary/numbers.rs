//! Times and numbers as nirs4all writes them: ISO 8601 instants with
//! microseconds, Python's `round(x, 4)`, and pandas' quartile positions.

/// The current UTC time as nirs4all writes it: `2026-11-23T10:59:35.020017+00:00`.
pub fn utc_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    iso8601(d.as_secs() as i64, d.subsec_micros())
}

/// Formats Unix seconds and microseconds as ISO 8601 UTC (civil-from-days,
/// H. Hinnant's algorithm).
pub fn iso8601(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Rounds like Python's `round(x, 4)` (half to even on the exact value).
///
/// Away from a tie, `round(x * 1e4) / 1e4` is the double nearest the
/// correctly rounded decimal (the product is off by at most an ulp, and the
/// division is correctly rounded); near a tie the exact decimal expansion
/// decides, through the formatter (slow, rare).
pub fn round4(x: f64) -> f64 {
    let y = x * 1e4;
    if !y.is_finite() || ((y - y.trunc()).abs() - 0.5).abs() < 1e-6 {
        return format!("{x:.4}").parse().unwrap_or(x);
    }
    y.round() / 1e4
}

/// Reorders `v` so that each quartile position ([`quantile_index`] of
/// 0.25, 0.5, 0.75) holds the value a full sort would put there: three
/// selections, O(n), instead of an O(n log n) sort (a third of an append's
/// time at 330,000 scores).
pub fn place_quartiles(v: &mut [f64]) {
    let n = v.len() as u64;
    if n == 0 {
        return;
    }
    let [lo, mid, hi] = [0.25, 0.5, 0.75].map(|q| quantile_index(q, n) as usize);
    v.select_nth_unstable_by(mid, f64::total_cmp);
    if lo < mid {
        v[..mid].select_nth_unstable_by(lo, f64::total_cmp);
    }
    if hi > mid {
        v[mid + 1..].select_nth_unstable_by(hi - mid - 1, f64::total_cmp);
    }
}

/// Index of quantile `q` among `n` sorted values, by the contract's rule:
/// `round_half_away(q * (n - 1))`.
pub fn quantile_index(q: f64, n: u64) -> u64 {
    (q * (n - 1) as f64).round() as u64
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso8601(1_795_431_575, 20_017),
            "2026-11-23T10:59:35.020017+00:00"
        );
        assert_eq!(iso8601(951_782_400, 0), "2000-02-29T00:00:00.000000+00:00");
    }

    #[test]
    fn round4_is_pythons_round() {
        // Python: round(0.03125, 4) == 0.0312, round(0.09375, 4) == 0.0938
        assert_eq!(round4(0.03125), 0.0312);
        assert_eq!(round4(0.09375), 0.0938);
        assert_eq!(round4(4.414367853590737), 4.4144);
        assert_eq!(round4(-0.03125), -0.0312);
    }

    #[test]
    fn round4_fast_path_equals_the_formatter() {
        let mut s = 12345u64;
        for _ in 0..200_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 10f64.powi((s % 9) as i32 - 4);
            let slow: f64 = format!("{x:.4}").parse().unwrap();
            assert_eq!(round4(x), slow, "{x}");
        }
    }

    #[test]
    fn placed_quartiles_equal_sorted_ones() {
        let mut seed = 99u64;
        for n in 0..200usize {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 40) % 50) as f64
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            place_quartiles(&mut v);
            for q in [0.25, 0.5, 0.75] {
                if n > 0 {
                    let i = quantile_index(q, n as u64) as usize;
                    assert_eq!(v[i], sorted[i], "n {n} q {q}");
                }
            }
        }
    }

    #[test]
    fn quantile_index_rounds_half_away() {
        assert_eq!(quantile_index(0.25, 15), 4); // 3.5 -> 4
        assert_eq!(quantile_index(0.5, 2), 1); // 0.5 -> 1
        assert_eq!(quantile_index(0.75, 1), 0);
    }
}
