//! Row filters: values per field and score ranges, plus the `--where`
//! parser whose errors point at the bad token.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A field rows are filtered on by value: the one list the CLI flags, the
/// HTTP parameters, the OpenAPI document and the planner all come from.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The name [`Filters`] uses.
    pub name: &'static str,
    /// The column it reads (`dataset` is the file's).
    pub column: &'static str,
    /// The HTTP query parameter.
    pub param: &'static str,
    /// The CLI flag (without `--`).
    pub flag: &'static str,
    /// What it selects.
    pub help: &'static str,
}

const fn field(
    name: &'static str,
    column: &'static str,
    param: &'static str,
    flag: &'static str,
    help: &'static str,
) -> Field {
    Field {
        name,
        column,
        param,
        flag,
        help,
    }
}

/// Every value filter. Each takes several values (repeat, or separate
/// with commas).
pub const FIELDS: [Field; 10] = [
    field(
        "dataset",
        "dataset",
        "dataset",
        "dataset",
        "Dataset(s): only their files are opened",
    ),
    field(
        "model_name",
        "model_name",
        "model",
        "model",
        "model_name value(s)",
    ),
    field(
        "model_classname",
        "model_classname",
        "model_class",
        "model-class",
        "model_classname value(s)",
    ),
    field(
        "config_name",
        "config_name",
        "config",
        "config",
        "config_name value(s)",
    ),
    field(
        "partition",
        "partition",
        "partition",
        "partition",
        "partition value(s): train, val, test",
    ),
    field("fold_id", "fold_id", "fold", "fold", "fold_id value(s)"),
    field(
        "task_type",
        "task_type",
        "task_type",
        "task-type",
        "task_type value(s)",
    ),
    field("metric", "metric", "metric", "metric", "metric value(s)"),
    field(
        "branch",
        "branch_name",
        "branch",
        "branch",
        "branch_name value(s)",
    ),
    field("id", "id", "id", "id", "Prediction id(s)"),
];

/// The column a value filter field reads (the name itself if unknown).
pub fn column_of(name: &str) -> &str {
    FIELDS
        .iter()
        .find(|f| f.name == name)
        .map_or(name, |f| f.column)
}

/// Score columns a range can apply to.
pub const SCORES: [&str; 3] = ["val_score", "test_score", "train_score"];

/// A bound of a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The value.
    pub value: f64,
    /// Whether the value itself matches.
    pub inclusive: bool,
}

/// A range on a score column. Null and NaN scores never match a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// `val_score`, `test_score` or `train_score`.
    pub column: String,
    /// Lower bound.
    pub lo: Option<Bound>,
    /// Upper bound.
    pub hi: Option<Bound>,
}

impl Range {
    /// True when `v` is in the range (never for null or NaN).
    pub fn matches(&self, v: Option<f64>) -> bool {
        let Some(v) = v.filter(|v| !v.is_nan()) else {
            return false;
        };
        let lo = self.lo.is_none_or(|b| {
            if b.inclusive {
                v >= b.value
            } else {
                v > b.value
            }
        });
        let hi = self.hi.is_none_or(|b| {
            if b.inclusive {
                v <= b.value
            } else {
                v < b.value
            }
        });
        lo && hi
    }

    /// True when some value in `[min, max]` could match.
    pub fn overlaps(&self, min: f64, max: f64) -> bool {
        let lo = self.lo.is_none_or(|b| {
            if b.inclusive {
                max >= b.value
            } else {
                max > b.value
            }
        });
        let hi = self.hi.is_none_or(|b| {
            if b.inclusive {
                min <= b.value
            } else {
                min < b.value
            }
        });
        lo && hi
    }
}

/// What rows a query keeps: every listed field must have one of its values
/// (`dataset` is the file's dataset), and every range must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Accepted values by field name (see `VALUE_FIELDS`).
    pub values: BTreeMap<String, Vec<String>>,
    /// Score ranges.
    pub ranges: Vec<Range>,
}

impl Filters {
    /// Accepts `values` for `field`.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for an unknown field.
    pub fn with(
        mut self,
        field: &str,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        if !FIELDS.iter().any(|f| f.name == field) {
            return Err(Error::InvalidQuery(format!(
                "unknown filter field {field:?} (known: {})",
                FIELDS.map(|f| f.name).join(", ")
            )));
        }
        let vals: Vec<String> = values.into_iter().map(Into::into).collect();
        if !vals.is_empty() {
            self.values
                .entry(field.to_string())
                .or_default()
                .extend(vals);
        }
        Ok(self)
    }

    /// Adds the ranges of a `--where` expression.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] pointing at the bad token.
    pub fn with_where(mut self, expr: &str) -> Result<Self> {
        self.ranges.extend(parse_where(expr)?);
        Ok(self)
    }

    /// The accepted values of `field`, if filtered.
    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.values.get(field).map(Vec::as_slice)
    }

    /// The filters of a ranking (top-k, group-by: one row per prediction):
    /// the val partition unless a partition is asked, and every partition
    /// for `all` (nirs4all's train, val and test rows of a prediction carry
    /// the same scores, so ranking all of them lists each prediction three
    /// times). Also says which rows, for a header.
    #[must_use]
    pub fn for_ranking(mut self) -> (Self, String) {
        let asked = self.values.get("partition").map(Vec::as_slice);
        let said = match asked {
            None | Some([]) => {
                self.values.insert("partition".into(), vec!["val".into()]);
                "the val partition (the default; --partition all for every row)".to_string()
            }
            Some(v) if v.iter().any(|p| p == "all") => {
                self.values.remove("partition");
                "every partition".to_string()
            }
            Some([one]) => format!("the {one} partition"),
            Some(v) => format!("the {} partitions", v.join(" and ")),
        };
        (self, said)
    }

    /// True when only the file-level `dataset` filter (or nothing) is set.
    pub fn is_file_level_only(&self) -> bool {
        self.ranges.is_empty() && self.values.keys().all(|k| k == "dataset")
    }
}

/// Parses `val_score>=0.5, test_score<1 and train_score!=0`-style
/// expressions: comparisons of a score column with a number, joined by
/// `,` or `and`. Operators: `>=`, `>`, `<=`, `<`, `=`.
///
/// # Errors
/// [`Error::InvalidQuery`] with the expression and a caret under the token
/// that is wrong.
pub fn parse_where(expr: &str) -> Result<Vec<Range>> {
    let mut out: Vec<Range> = Vec::new();
    let tokens = tokenize(expr);
    let mut i = 0;
    while i < tokens.len() {
        let (pos, col) = tokens[i];
        if !SCORES.contains(&col) {
            return Err(point(
                expr,
                pos,
                &format!(
                    "expected a score column ({}), found {col:?}",
                    SCORES.join(", ")
                ),
            ));
        }
        let (op_pos, op) = *tokens
            .get(i + 1)
            .ok_or_else(|| point(expr, expr.len(), "expected an operator"))?;
        let (num_pos, num) = *tokens
            .get(i + 2)
            .ok_or_else(|| point(expr, expr.len(), "expected a number"))?;
        let value: f64 = num
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| point(expr, num_pos, &format!("expected a number, found {num:?}")))?;
        let b = |inclusive| Some(Bound { value, inclusive });
        let (lo, hi) = match op {
            ">=" => (b(true), None),
            ">" => (b(false), None),
            "<=" => (None, b(true)),
            "<" => (None, b(false)),
            "=" | "==" => (b(true), b(true)),
            _ => {
                return Err(point(
                    expr,
                    op_pos,
                    &format!("expected >=, >, <=, < or =, found {op:?}"),
                ))
            }
        };
        out.push(Range {
            column: col.to_string(),
            lo,
            hi,
        });
        i += 3;
        if let Some(&(sep_pos, sep)) = tokens.get(i) {
            if sep != "," && !sep.eq_ignore_ascii_case("and") {
                return Err(point(
                    expr,
                    sep_pos,
                    &format!("expected ',' or 'and', found {sep:?}"),
                ));
            }
            i += 1;
            if i == tokens.len() {
                return Err(point(
                    expr,
                    expr.len(),
                    "expected a comparison after the separator",
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(point(expr, 0, "empty expression"));
    }
    Ok(out)
}

/// Splits into identifiers/numbers, operator runs and commas, with byte offsets.
fn tokenize(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let class = |c: u8| match c {
        b'<' | b'>' | b'=' | b'!' => 1,
        b',' => 2,
        c if c.is_ascii_whitespace() => 0,
        _ => 3,
    };
    while i < b.len() {
        let c = class(b[i]);
        if c == 0 {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if c != 2 {
            while i < b.len() && class(b[i]) == c {
                i += 1;
            }
        }
        out.push((start, &s[start..i]));
    }
    out
}

fn point(expr: &str, pos: usize, msg: &str) -> Error {
    Error::InvalidQuery(format!(
        "--where {msg} at column {}\n  {expr}\n  {}^",
        pos + 1,
        " ".repeat(pos)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comparisons() {
        let r = parse_where("val_score>=0.5, test_score < 1 and train_score=0.25").unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].matches(Some(0.5)) && !r[0].matches(Some(0.49)));
        assert!(!r[1].matches(Some(1.0)) && r[1].matches(Some(-3.0)));
        assert!(r[2].matches(Some(0.25)) && !r[2].matches(None) && !r[2].matches(Some(f64::NAN)));
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        let e = parse_where("val_score>>0.5").unwrap_err().to_string();
        assert!(e.contains("found \">>\" at column 10"), "{e}");
        assert!(e.ends_with("\n  val_score>>0.5\n           ^"), "{e:?}");
        let e = parse_where("val_score >= abc").unwrap_err().to_string();
        assert!(
            e.contains("expected a number, found \"abc\" at column 14"),
            "{e}"
        );
        let e = parse_where("score > 1").unwrap_err().to_string();
        assert!(e.contains("found \"score\" at column 1"), "{e}");
        assert!(parse_where("val_score > 1,").is_err());
        assert!(parse_where("").is_err());
    }

    #[test]
    fn overlap_prunes_by_min_max() {
        let r = parse_where("val_score>0.5").unwrap();
        assert!(!r[0].overlaps(0.1, 0.5));
        assert!(r[0].overlaps(0.1, 0.6));
    }
}
