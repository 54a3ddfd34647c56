//! Keeping the API key out of what runner stores or shows: an endpoint that echoes its
//! request, or an error that repeats a header, must not put the key in a result, a page or a
//! stream. `apply` cleans a whole text; `Stream` cleans text that arrives in pieces, where a
//! piece may end in the middle of the key.

/// What the key is replaced by.
pub const MARK: &str = "[redacted]";

/// A key this short would redact ordinary words; real keys are far longer.
const MIN_KEY: usize = 8;

/// The key worth redacting: None for no key, or one too short to tell from text.
pub fn key(key: Option<&str>) -> Option<&str> {
    key.filter(|k| k.len() >= MIN_KEY)
}

/// `text` with every occurrence of `key` replaced by `MARK`.
pub fn apply(text: &str, key: &str) -> String {
    if text.contains(key) {
        text.replace(key, MARK)
    } else {
        text.to_string()
    }
}

/// Redacts a text that arrives in pieces: what `push` returns is safe to show at once, and
/// holds back only the tail that could still be the start of the key; `finish` gives the rest.
pub struct Stream {
    key: String,
    pending: String,
}

impl Stream {
    pub fn new(key: &str) -> Stream {
        Stream {
            key: key.to_string(),
            pending: String::new(),
        }
    }

    /// Takes the next piece; returns what can be shown now.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let clean = apply(&self.pending, &self.key);
        // The longest tail of the text that is a start of the key waits for the next piece.
        let keep = (1..self.key.len())
            .rev()
            .find(|&n| {
                self.key.is_char_boundary(n)
                    && clean.ends_with(&self.key[..n])
                    && clean.is_char_boundary(clean.len() - n)
            })
            .unwrap_or(0);
        let (shown, held) = clean.split_at(clean.len() - keep);
        let shown = shown.to_string();
        self.pending = held.to_string();
        shown
    }

    /// What is still held back, once no piece follows.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-test-0123456789";

    #[test]
    fn a_key_split_across_pieces_is_never_shown() {
        let text = format!("your key is {KEY}, and again {KEY}!");
        // Every split into pieces of every size gives the same clean text, and no piece ever
        // holds the key or the part of it that would reveal it.
        for size in 1..text.len() {
            let mut stream = Stream::new(KEY);
            let mut shown = String::new();
            let bytes = text.as_bytes();
            for chunk in bytes.chunks(size) {
                let piece = std::str::from_utf8(chunk).unwrap();
                let out = stream.push(piece);
                assert!(!out.contains("0123456789"), "size {size}: {out}");
                shown.push_str(&out);
            }
            shown.push_str(&stream.finish());
            assert_eq!(shown, apply(&text, KEY), "size {size}");
            assert!(!shown.contains(KEY));
        }
    }

    #[test]
    fn text_without_the_key_passes_through_and_only_a_possible_start_waits() {
        let mut stream = Stream::new(KEY);
        assert_eq!(stream.push("hello "), "hello ");
        assert_eq!(stream.push("sk-"), "");
        assert_eq!(stream.push("x"), "sk-x");
        assert_eq!(stream.push("ünï sk"), "ünï ");
        assert_eq!(stream.finish(), "sk");
        assert_eq!(key(Some("short")), None);
        assert_eq!(key(Some(KEY)), Some(KEY));
    }
}
