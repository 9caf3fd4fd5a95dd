//! Column buffers for prediction rows in the contract's 35 columns: a
//! writer's row group, a page's rows as one batch.
//!
//! Strings go into contiguous Arrow buffers as rows arrive, so a buffered
//! row costs its bytes plus a few offsets, not 25 separate heap strings.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};

use super::{meta_schema, Cell, Kind, Prediction, COLUMNS};
use crate::error::Result;

enum Col {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
}

/// Buffers of the 35 columns.
pub struct MetaColumns {
    cols: Vec<Col>,
    rows: usize,
    bytes: usize,
}

impl Default for MetaColumns {
    fn default() -> Self {
        let cols = COLUMNS
            .iter()
            .map(|(_, k)| match k {
                Kind::Str => Col::Str(StringBuilder::new()),
                Kind::Int => Col::Int(Int64Builder::new()),
                Kind::Float => Col::Float(Float64Builder::new()),
            })
            .collect();
        MetaColumns {
            cols,
            rows: 0,
            bytes: 0,
        }
    }
}

impl MetaColumns {
    /// Buffered rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Approximate buffered bytes (string bytes plus 8 per value).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one row.
    pub fn push(&mut self, p: &Prediction) {
        for (col, cell) in self.cols.iter_mut().zip(p.cells()) {
            match (col, cell) {
                (Col::Str(b), Cell::Str(v)) => {
                    self.bytes += v.map_or(0, str::len) + 8;
                    b.append_option(v);
                }
                (Col::Int(b), Cell::Int(v)) => b.append_option(v),
                (Col::Float(b), Cell::Float(v)) => b.append_option(v),
                _ => unreachable!("cells follow COLUMNS"),
            }
        }
        self.bytes += 8 * 10;
        self.rows += 1;
    }

    /// Takes the buffered rows as a batch with the contract schema.
    ///
    /// # Errors
    /// Arrow errors (none expected: the schema is built from the same table).
    pub fn take_batch(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::Str(b) => Arc::new(b.finish()),
                    Col::Int(b) => Arc::new(b.finish()),
                    Col::Float(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        self.bytes = 0;
        Ok(RecordBatch::try_new(meta_schema(), arrays)?)
    }
}
