//! Diffs as HTML: changed lines with the changed words inside them highlighted, computed on the
//! server with `similar`. It draws one text diff and nothing else: it reads no store and decides no
//! field's change (that is `crate::diff`'s), and every piece of either text goes through
//! `Html::text`.

use super::html::Html;
use similar::{ChangeTag, TextDiff};

/// Lines of context kept around each change.
const CONTEXT: usize = 3;

/// A line diff of `old` → `new` with word-level highlights inside changed lines, or a note
/// when they are equal.
pub fn render(old: &str, new: &str, out: &mut Html) {
    if old == new {
        out.raw("<p class=\"muted\">no differences</p>");
        return;
    }
    let diff = TextDiff::from_lines(old, new);
    // "No newline at end" matters only when one side has a final newline and the other not.
    let newline_changed = old.ends_with('\n') != new.ends_with('\n');
    out.raw("<div class=\"diff\" role=\"table\" aria-label=\"differences\">");
    for (index, group) in diff.grouped_ops(CONTEXT).iter().enumerate() {
        if index > 0 {
            out.raw("<div class=\"diff-gap\">⋯</div>");
        }
        for op in group {
            for change in diff.iter_inline_changes(op) {
                let (class, sign) = match change.tag() {
                    ChangeTag::Delete => ("diff-line del", "−"),
                    ChangeTag::Insert => ("diff-line ins", "+"),
                    ChangeTag::Equal => ("diff-line", " "),
                };
                // A removed line is numbered as in the old text, any other as in the new.
                let index = match change.tag() {
                    ChangeTag::Delete => change.old_index(),
                    _ => change.new_index(),
                };
                let number = index.map(|i| (i + 1).to_string()).unwrap_or_default();
                out.raw("<div").attr("class", class).raw(" role=\"row\">");
                out.raw("<span class=\"ln\">").text(&number).raw("</span>");
                out.raw("<span class=\"sign\">")
                    .text(sign)
                    .raw("</span><code>");
                for (emphasised, value) in change.iter_strings_lossy() {
                    let value = value.strip_suffix('\n').unwrap_or(&value);
                    if emphasised {
                        out.raw("<mark>").text(value).raw("</mark>");
                    } else {
                        out.text(value);
                    }
                }
                if newline_changed && change.missing_newline() {
                    out.raw("<span class=\"muted\"> ⏎ no newline at end</span>");
                }
                out.raw("</code></div>");
            }
        }
    }
    out.raw("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_words_are_marked_inside_changed_lines() {
        let mut out = Html::new();
        render(
            "Hello {{name}}, how can I help?\nBye\n",
            "Hello {{name}}, how may I help?\nBye\n",
            &mut out,
        );
        let html = out.into_string();
        assert!(html.contains("diff-line del"), "{html}");
        assert!(html.contains("diff-line ins"), "{html}");
        assert!(html.contains("<mark>can</mark>"), "{html}");
        assert!(html.contains("<mark>may</mark>"), "{html}");
        assert!(!html.contains("<mark>Hello"), "{html}");
    }

    #[test]
    fn equal_texts_and_hostile_text() {
        let mut out = Html::new();
        render("same", "same", &mut out);
        assert!(out.as_str().contains("no differences"));
        let mut out = Html::new();
        render("<b>a</b>", "<script>x</script>", &mut out);
        assert!(!out.as_str().contains("<script>"), "{}", out.as_str());
        assert!(out.as_str().contains("&lt;script&gt;"));
    }
}
