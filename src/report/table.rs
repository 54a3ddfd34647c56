//! Tables as the terminal shows them, one style for every command: a header row in capitals
//! (when the table has one) over columns aligned by spaces, no borders, easy to read and to grep. Fitted
//! to the terminal's width once it is known: the widest columns give up room first, and a cell
//! wraps between words, never inside one. It owns the width and the cutting of long cells; it
//! must not know what the rows hold.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A table with a header row.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    table_within(Some(&headers), &rows, width())
}

/// A table whose header row is optional (a summary's `name  value` lines have none).
pub fn aligned_table(headers: Option<Vec<String>>, rows: Vec<Vec<String>>) -> String {
    table_within(headers.as_deref(), &rows, width())
}

/// A line of prose (a table's title) wrapped between words to the width tables are fitted to.
pub fn fit_line(text: &str) -> String {
    match width() {
        Some(width) => wrap(text, width as usize).join("\n"),
        None => text.to_string(),
    }
}

/// The width tables are fitted to, set once per process by the command dispatcher; unset (as
/// in tests), tables take the room they need.
static WIDTH: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();

fn width() -> Option<u16> {
    WIDTH.get().copied().flatten()
}

/// Lines a row's cell may take when the table is fitted to a width; the rest is cut, marked.
const MAX_CELL_LINES: usize = 3;

/// Spaces between two columns.
const GAP: usize = 2;

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
    comfy_table::Table::new().width().filter(|w| *w >= 20)
}

/// A table in `width` columns at most, when one is given. Columns wider than their share are
/// narrowed (the widest first, never below their longest word), and their cells wrap between
/// words; a cell longer than `MAX_CELL_LINES` lines is cut with `…`. The full text stays in
/// `--json` and `--csv`. When even the longest words do not fit, the table is wider than asked
/// rather than cut inside a word (a word wider than the whole width is the one exception).
pub fn table_within(
    headers: Option<&[String]>,
    rows: &[Vec<String>],
    width: Option<u16>,
) -> String {
    let columns = headers
        .map(<[String]>::len)
        .into_iter()
        .chain(rows.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    if columns == 0 {
        return String::new();
    }
    let cell = |row: &[String], i: usize| row.get(i).map_or("", String::as_str).to_string();
    // Headers in capitals, as in every list: the row that names the columns stands out
    // without a border.
    let all: Vec<Vec<String>> = headers
        .map(|h| (0..columns).map(|i| cell(h, i).to_uppercase()).collect())
        .into_iter()
        .chain(
            rows.iter()
                .map(|r| (0..columns).map(|i| cell(r, i)).collect()),
        )
        .collect();
    let natural: Vec<usize> = (0..columns)
        .map(|i| all.iter().map(|r| widest_line(&r[i])).max().unwrap_or(0))
        .collect();
    let widths = match width {
        Some(width) => fit(
            &natural,
            &(0..columns)
                .map(|i| all.iter().map(|r| longest_word(&r[i])).max().unwrap_or(0))
                .collect::<Vec<_>>(),
            (width as usize).saturating_sub(GAP * (columns - 1)),
        ),
        None => natural,
    };
    let fitted = width.is_some();
    let mut out = Vec::new();
    for row in &all {
        let cells: Vec<Vec<String>> = row
            .iter()
            .zip(&widths)
            .map(|(text, &w)| {
                let lines = wrap(text, w);
                if fitted && lines.len() > MAX_CELL_LINES {
                    cut(lines, w)
                } else {
                    lines
                }
            })
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for line in 0..height {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let part = cell.get(line).map_or("", String::as_str);
                text.push_str(part);
                if i + 1 < columns {
                    let pad = widths[i].saturating_sub(part.width()) + GAP;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push(text.trim_end().to_string());
        }
    }
    out.join("\n")
}

/// Column widths within `room`: each column's natural width, the widest capped first, but
/// none below its longest word. Over `room` when the words alone do not fit, except that a
/// column is never made wider than the whole room.
fn fit(natural: &[usize], words: &[usize], room: usize) -> Vec<usize> {
    let room = room.max(1);
    let least: Vec<usize> = natural
        .iter()
        .zip(words)
        .map(|(&n, &w)| w.min(n).min(room).max(1))
        .collect();
    let total = |cap: usize| -> usize {
        natural
            .iter()
            .zip(&least)
            .map(|(&n, &l)| n.min(cap.max(l)))
            .sum()
    };
    let widest = natural.iter().copied().max().unwrap_or(0);
    if total(widest) <= room {
        return natural.to_vec();
    }
    // The largest cap that fits: every column narrower than it keeps its width.
    let (mut low, mut high) = (0, widest);
    while low < high {
        let mid = (low + high).div_ceil(2);
        if total(mid) <= room {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let mut widths: Vec<usize> = natural
        .iter()
        .zip(&least)
        .map(|(&n, &l)| n.min(low.max(l)))
        .collect();
    // Room left under the cap goes to the columns that were cut, left to right.
    let mut spare = room.saturating_sub(widths.iter().sum());
    for (w, &n) in widths.iter_mut().zip(natural) {
        let more = n.saturating_sub(*w).min(spare);
        *w += more;
        spare -= more;
    }
    widths
}

fn widest_line(text: &str) -> usize {
    text.lines().map(UnicodeWidthStr::width).max().unwrap_or(0)
}

fn longest_word(text: &str) -> usize {
    text.split_whitespace()
        .map(UnicodeWidthStr::width)
        .max()
        .unwrap_or(0)
}

/// The cell's lines, each wrapped between words to `width` columns (a word wider than
/// `width`, which `fit` allows only when it is wider than the whole table, is split).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.width() <= width {
            out.push(line.to_string());
            continue;
        }
        let mut current = String::new();
        for word in line.split_whitespace() {
            let needed = if current.is_empty() {
                word.width()
            } else {
                current.width() + 1 + word.width()
            };
            if needed <= width {
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
                continue;
            }
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if word.width() <= width {
                current.push_str(word);
            } else {
                let mut pieces = split_word(word, width);
                current = pieces.pop().unwrap_or_default();
                out.extend(pieces);
            }
        }
        out.push(current);
    }
    out
}

fn split_word(word: &str, width: usize) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut used = 0;
    for c in word.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width && used > 0 {
            pieces.push(String::new());
            used = 0;
        }
        pieces.last_mut().expect("one piece at least").push(c);
        used += w;
    }
    pieces
}

/// The first `MAX_CELL_LINES` lines, the last ending in `…`.
fn cut(mut lines: Vec<String>, width: usize) -> Vec<String> {
    lines.truncate(MAX_CELL_LINES);
    if let Some(last) = lines.last_mut() {
        while !last.is_empty() && last.width() + 1 > width {
            last.pop();
        }
        last.push('…');
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_are_aligned_with_two_spaces_and_no_trailing_blanks() {
        let headers = strings(&["id", "NAME", "Note"]);
        let rows = vec![strings(&["1", "greeting", ""]), strings(&["22", "x", "ok"])];
        let text = table_within(Some(&headers), &rows, None);
        assert_eq!(text, "ID  NAME      NOTE\n1   greeting\n22  x         ok");
    }

    #[test]
    fn at_80_columns_cells_wrap_between_words_never_inside_one() {
        let headers = strings(&["metric", "difference", "95% CI", "p-value (test)"]);
        let long = "the candidate answers more questions than the baseline";
        let rows = vec![strings(&[
            "pass rate [icontains]",
            "-50.0 pts",
            long,
            "1.00 (McNemar's exact test)",
        ])];
        let text = table_within(Some(&headers), &rows, Some(80));
        for line in text.lines() {
            assert!(line.width() <= 80, "{line:?} is wider than 80\n{text}");
        }
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let mut all_words: Vec<String> = text.lines().flat_map(words).collect();
        for word in words(long)
            .into_iter()
            .chain(words("DIFFERENCE (McNemar's"))
        {
            let at = all_words.iter().position(|w| *w == word);
            assert!(at.is_some(), "{word:?} was broken\n{text}");
            all_words.remove(at.unwrap());
        }
    }

    #[test]
    fn words_wider_than_their_share_widen_the_table_instead_of_breaking() {
        let rows = vec![strings(&[
            "differences",
            "extraordinarily-long-identifier",
            "x",
        ])];
        let text = table_within(None, &rows, Some(40));
        assert_eq!(text, "differences  extraordinarily-long-identifier  x");
        // A word wider than the whole width is the one that is split.
        let rows = vec![strings(&["a", &"w".repeat(30)])];
        let text = table_within(None, &rows, Some(20));
        assert!(text.lines().all(|l| l.width() <= 20 + 3), "{text}");
    }

    #[test]
    fn a_cell_longer_than_three_lines_is_cut_with_a_mark_only_when_fitted() {
        let long = "word ".repeat(40);
        let rows = vec![strings(&["key", long.trim()])];
        let fitted = table_within(None, &rows, Some(30));
        assert_eq!(fitted.lines().count(), 3, "{fitted}");
        assert!(fitted.ends_with('…'), "{fitted}");
        let unfitted = table_within(None, &rows, None);
        assert_eq!(unfitted.lines().count(), 1);
        assert!(unfitted.ends_with("word"));
    }

    #[test]
    fn multi_line_cells_keep_their_lines_and_the_next_column_stays_aligned() {
        let rows = vec![strings(&["a\nbb", "x"]), strings(&["ccc", "y"])];
        assert_eq!(table_within(None, &rows, None), "a    x\nbb\nccc  y");
    }

    #[test]
    fn wide_characters_count_as_two_columns() {
        let rows = vec![strings(&["日本", "x"]), strings(&["abc", "y"])];
        assert_eq!(table_within(None, &rows, None), "日本  x\nabc   y");
    }
}
