//! Shortening free text for display: one excerpt helper for every layer (error messages,
//! evaluator reasons, tables), so text is cut the same way everywhere. It only cuts text: it prints
//! nothing and must not know where the text is shown.

/// The text on one line (every run of white space or control characters becomes one space),
/// at most `max` characters, with `…` when something was cut.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)) + 3);
    let mut cut = false;
    let mut count = 0;
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if count > 0 {
            if count == max {
                cut = true;
                break;
            }
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count == max {
                cut = true;
                break;
            }
            out.push(c);
            count += 1;
        }
        if cut {
            break;
        }
    }
    if cut {
        out.push('…');
    }
    out
}

/// The first line of the text (without a trailing `\r`), at most `max` characters, with `…`
/// when it was cut or more lines follow.
pub fn first_line(text: &str, max: usize) -> String {
    let mut lines = text.split('\n');
    let line = lines.next().unwrap_or_default();
    let line = line.strip_suffix('\r').unwrap_or(line);
    let more = lines.next().is_some();
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if more => format!("{line}…"),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_folds_white_space_and_marks_a_cut() {
        let cases = [
            ("a\nb", 10, "a b"),
            ("  a \t\r\n b  ", 10, "a b"),
            ("a\u{0}b", 10, "a b"),
            ("ééééé", 3, "ééé…"),
            ("abc", 3, "abc"),
            ("ab cd", 3, "ab …"),
            ("ab cd", 2, "ab…"),
            ("", 5, ""),
        ];
        for (text, max, expected) in cases {
            assert_eq!(one_line(text, max), expected, "{text:?} {max}");
        }
    }

    #[test]
    fn first_line_keeps_one_line_and_marks_what_it_left_out() {
        let cases = [
            ("short", 10, "short"),
            ("a longer line", 4, "a lo…"),
            ("one\ntwo", 10, "one…"),
            ("one\r\n", 10, "one…"),
            ("ééé", 3, "ééé"),
        ];
        for (text, max, expected) in cases {
            assert_eq!(first_line(text, max), expected, "{text:?} {max}");
        }
    }
}
