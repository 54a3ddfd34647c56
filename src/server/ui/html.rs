//! Strict HTML building: text enters a page only through `Html::text` (escaped), attribute
//! values only through `Html::attr` (escaped and quoted), so prompt text, model output and
//! row values, all hostile, cannot become markup. Markup itself is written only from string
//! literals in this crate (`Html::raw` takes `&'static str`).

use std::fmt::Write as _;

/// A page (or part of one) under construction.
#[derive(Debug, Default, Clone)]
pub struct Html {
    out: String,
}

impl Html {
    pub fn new() -> Html {
        Html::default()
    }

    /// Markup written in this crate's source.
    pub fn raw(&mut self, markup: &'static str) -> &mut Html {
        self.out.push_str(markup);
        self
    }

    /// Text, escaped for element content and attribute values alike.
    pub fn text(&mut self, text: &str) -> &mut Html {
        escape_into(&mut self.out, text);
        self
    }

    /// A formatted value (numbers, times), escaped like any text.
    pub fn display(&mut self, value: impl std::fmt::Display) -> &mut Html {
        let mut text = String::new();
        let _ = write!(text, "{value}");
        self.text(&text)
    }

    /// ` name="value"`, the value escaped.
    pub fn attr(&mut self, name: &'static str, value: &str) -> &mut Html {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        escape_into(&mut self.out, value);
        self.out.push('"');
        self
    }

    /// Another fragment built with the same rules.
    pub fn push(&mut self, fragment: &Html) -> &mut Html {
        self.out.push_str(&fragment.out);
        self
    }

    /// `<a href="HREF">TEXT</a>`.
    pub fn link(&mut self, href: &str, text: &str) -> &mut Html {
        self.raw("<a")
            .attr("href", href)
            .raw(">")
            .text(text)
            .raw("</a>")
    }

    /// `<tag class="CLASS">TEXT</tag>`.
    pub fn element(&mut self, tag: Tag, class: &str, text: &str) -> &mut Html {
        self.raw(tag.open());
        if !class.is_empty() {
            self.attr("class", class);
        }
        self.raw(">").text(text).raw(tag.close())
    }

    pub fn into_string(self) -> String {
        self.out
    }

    pub fn as_str(&self) -> &str {
        &self.out
    }
}

/// Elements `Html::element` writes.
#[derive(Debug, Clone, Copy)]
pub enum Tag {
    Span,
    Td,
    Th,
    Code,
    Pre,
    P,
}

impl Tag {
    fn open(self) -> &'static str {
        match self {
            Tag::Span => "<span",
            Tag::Td => "<td",
            Tag::Th => "<th",
            Tag::Code => "<code",
            Tag::Pre => "<pre",
            Tag::P => "<p",
        }
    }

    fn close(self) -> &'static str {
        match self {
            Tag::Span => "</span>",
            Tag::Td => "</td>",
            Tag::Th => "</th>",
            Tag::Code => "</code>",
            Tag::Pre => "</pre>",
            Tag::P => "</p>",
        }
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newlines have no place in a page.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// Percent-encodes a value for a URL path segment or query value.
pub fn url_part(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        let mut html = Html::new();
        html.raw("<p")
            .attr("title", "\"><script>alert(1)</script>")
            .raw(">")
            .text("<script>alert('x') & more</script>\u{0}")
            .raw("</p>");
        assert_eq!(
            html.as_str(),
            "<p title=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\">\
             &lt;script&gt;alert(&#39;x&#39;) &amp; more&lt;/script&gt;\u{fffd}</p>"
        );
    }

    #[test]
    fn links_and_url_parts() {
        let mut html = Html::new();
        html.link(&format!("/prompts/{}", url_part("a b&c")), "a<b");
        assert_eq!(html.as_str(), "<a href=\"/prompts/a%20b%26c\">a&lt;b</a>");
        assert_eq!(url_part("v1.0_x-y~"), "v1.0_x-y~");
        assert_eq!(url_part("é"), "%C3%A9");
    }
}
