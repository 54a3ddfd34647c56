//! Tables as the terminal shows them: plain aligned columns for lists, bordered boxes for
//! summaries and comparisons, both fitted to the terminal's width once it is known. It owns
//! the width and the cutting of long cells; it must not know what the rows hold.

use comfy_table::{Table, presets};

/// A plain table: a header row and aligned columns, no borders, easy to read and to grep.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    table_within(headers, rows, WIDTH.get().copied().flatten())
}

/// The width tables are fitted to, set once per process by the command dispatcher; unset (as
/// in tests), tables take the room they need.
static WIDTH: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();

/// Lines a row's cell may take when the table is fitted to a width; the rest is cut, marked.
const MAX_CELL_LINES: usize = 3;

/// Fits every table this process prints to `width` columns.
pub fn fit_tables_to(width: Option<u16>) {
    let _ = WIDTH.set(width);
}

/// The width of the terminal stdout goes to: `COLUMNS` when set (so a pipe can ask for a
/// width), else the terminal's own; None when stdout is not a terminal.
pub fn terminal_width() -> Option<u16> {
    use std::io::IsTerminal;
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c >= 20)
    {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    Table::new().width().filter(|w| *w >= 20)
}

/// A table in `width` columns at most: comfy-table's dynamic arrangement wraps long cells, a
/// cell longer than `MAX_CELL_LINES` lines is cut with `…`. The full text stays in `--json`
/// and `--csv`.
pub fn table_within(headers: &[&str], rows: Vec<Vec<String>>, width: Option<u16>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(headers.iter().map(|h| h.to_string()));
    if let Some(width) = width {
        // One more than asked: the leading padding column is stripped below.
        table
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(width.saturating_add(1))
            .set_truncation_indicator("…");
    }
    for row in rows {
        let mut row = comfy_table::Row::from(row);
        if width.is_some() {
            row.max_height(MAX_CELL_LINES);
        }
        table.add_row(row);
    }
    // comfy-table pads every cell by one space on each side; the outer padding and trailing
    // blanks only get in the way of reading and grepping.
    table
        .lines()
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table with borders (summaries, comparisons), fitted to the width like `table`.
pub fn boxed_table(headers: Option<Vec<String>>, rows: Vec<Vec<String>>) -> String {
    let width = WIDTH.get().copied().flatten();
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    if let Some(width) = width {
        table
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(width)
            .set_truncation_indicator("…");
    }
    if let Some(headers) = headers {
        table.set_header(headers);
    }
    for row in rows {
        let mut row = comfy_table::Row::from(row);
        if width.is_some() {
            row.max_height(MAX_CELL_LINES);
        }
        table.add_row(row);
    }
    table.to_string()
}
