//! Output of the administration commands: a JSON array for programs, or a table with
//! aligned columns for people. Used by `assist-relay`'s listings. Table cells are made
//! inert ([`assist_proto::text`]); JSON is left to serde.

use serde::Serialize;
use std::io::Write;

/// How much of one cell a table shows; `--json` has everything.
const CELL_CHARS: usize = 1000;

/// Prints `items` as a JSON array, or as a table with aligned columns.
pub fn print_rows<T: Serialize>(
    json: bool,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, items)?;
        writeln!(out)?;
        return Ok(());
    }
    // Cells hold text from engineers, approvers and agents (reasons, notes, names in audit
    // details): each is made inert here, so no listing can be drawn over.
    let inert = |r: Vec<String>| r.iter().map(|c| assist_proto::text::inert(c, CELL_CHARS)).collect();
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| h.to_string()).collect())
        .chain(items.iter().map(row).map(inert))
        .collect();
    let mut widths = vec![0; headers.len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// Names joined with commas, or `-` for none.
pub fn join_or_dash(names: &[impl std::fmt::Display]) -> String {
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
    }
}
