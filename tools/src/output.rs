//! How the admin commands print their answers: tables for people (the default), or one JSON
//! document per command for scripts (`--output json`).
//!
//! A command builds one serializable value (its JSON document) and says how to show that
//! value as text; [`Output::print`] picks one of the two. The JSON shapes are part of the
//! command line's public interface: fields are only ever added.

use std::io::{self, Write};

use anyhow::{Context, Result};
use comfy_table::{CellAlignment, Table, presets};
use serde::Serialize;

/// The format of a command's answer on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Aligned tables and short sentences, for people.
    Table,
    /// One JSON document per command, for scripts.
    Json,
}

impl Output {
    /// Prints `value` as pretty JSON, or as the text `text` makes of it.
    pub(crate) fn print<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce(&T) -> String,
    ) -> Result<()> {
        let mut out = io::stdout().lock();
        match self {
            Output::Json => {
                serde_json::to_writer_pretty(&mut out, value)
                    .context("cannot write the answer as JSON to standard output")?;
                writeln!(out).context("cannot write to standard output")?;
            }
            Output::Table => {
                let text = text(value);
                out.write_all(text.as_bytes())
                    .context("cannot write to standard output")?;
                if !text.ends_with('\n') {
                    writeln!(out).context("cannot write to standard output")?;
                }
            }
        }
        out.flush().context("cannot write to standard output")
    }
}

/// A table with `header` (upper case, like `kubectl`'s), no borders, columns two spaces
/// apart; columns whose header is in `numeric` are aligned right.
pub(crate) fn table(header: &[&str], numeric: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    for (index, name) in header.iter().enumerate() {
        if numeric.contains(name)
            && let Some(column) = table.column_mut(index)
        {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// A table's text without the padding comfy-table puts at the start and end of each line.
pub(crate) fn render(table: &Table) -> String {
    let mut text = String::new();
    for line in table.lines() {
        let line = line.strip_prefix(' ').unwrap_or(&line).trim_end();
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// `items` joined with "," (one cell of a table), or "-" when there are none.
pub(crate) fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// An optional value, or "-".
pub(crate) fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Lines of `name: value`, names padded to one width.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (name, value) in pairs {
        text.push_str(&format!("{:<width$} {value}\n", format!("{name}:")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_upper_case_headers_and_aligned_columns() {
        let mut t = table(&["id", "address", "count"], &["count"]);
        t.add_row(vec!["1", "127.0.0.1:9093", "7"]);
        t.add_row(vec!["22", "h:1", "1234"]);
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(lines[0].contains("ADDRESS"), "{text}");
        assert!(lines[1].starts_with("1 "), "{text}");
        // The numeric column ends at the same place on every line.
        assert!(lines[1].ends_with("   7"), "{text}");
        assert!(lines[2].ends_with("1234"), "{text}");
    }

    #[test]
    fn lists_and_fields() {
        assert_eq!(list::<i32>(&[]), "-");
        assert_eq!(list(&[1, 2, 3]), "1,2,3");
        assert_eq!(or_dash::<i32>(None), "-");
        assert_eq!(
            fields(&[("brokers", "3".into()), ("controller", "1".into())]),
            "brokers:    3\ncontroller: 1\n"
        );
    }
}
