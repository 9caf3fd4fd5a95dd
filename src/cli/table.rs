//! Plain-text tables for people: columns padded to their widest cell.

/// A table under construction.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with two spaces between columns; numbers are right-aligned.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths = vec![0; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| {
                    if c.parse::<f64>().is_ok() {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// A float for people: 4 significant decimals, `-` when absent.
pub fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}

/// The top entries as a table: rank, scores, where they come from.
/// The top list as a table; an entry without a dataset shows `dataset`
/// (a file's own summary leaves it out: it is the file's).
pub fn top_table(
    entries: &[n4a::summary::topk::TopEntry],
    limit: usize,
    dataset: Option<&str>,
) -> String {
    let mut t = Table::new(&[
        "#",
        "val",
        "test",
        "train",
        "dataset",
        "model",
        "config",
        "fold",
        "partition",
        "id",
    ]);
    for (i, e) in entries.iter().take(limit).enumerate() {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        t.row(vec![
            (i + 1).to_string(),
            num(e.val_score),
            num(e.test_score),
            num(e.train_score),
            e.dataset
                .clone()
                .or_else(|| dataset.map(str::to_string))
                .unwrap_or_default(),
            s(&e.model_name),
            s(&e.config_name),
            s(&e.fold_id),
            s(&e.partition),
            s(&e.id),
        ]);
    }
    t.render()
}

/// The models table of a summary: name, predictions and average val score.
pub fn models_table(models: &[n4a::summary::ModelFacet]) -> String {
    let mut t = Table::new(&["model", "predictions", "avg val"]);
    for m in models {
        t.row(vec![
            m.name.clone().unwrap_or_default(),
            m.count.to_string(),
            num(m.avg_val_score),
        ]);
    }
    t.render()
}
