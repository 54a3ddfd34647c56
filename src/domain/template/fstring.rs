//! The f-string parser: `{name}` (dotted names allowed) and `{{` / `}}` for literal braces;
//! positional fields, format specs and conversions are refused. It only cuts text into pieces:
//! it must not look values up or render.

use super::names::{invalid_name, is_dotted_identifier};
use super::parse::{ParseFail, Piece};

pub(super) fn parse_fstring(text: &str) -> Result<Vec<Piece<'_>>, ParseFail> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                literal.push_str(&text[literal_start..=i]);
                i += 2;
                literal_start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                literal.push_str(&text[literal_start..=i]);
                i += 2;
                literal_start = i;
            }
            b'}' => {
                return Err(ParseFail::new(
                    i,
                    "single '}' encountered (write '}}' for a literal brace)",
                ));
            }
            b'{' => {
                literal.push_str(&text[literal_start..i]);
                let name_start = i + 1;
                let stop = bytes[name_start..]
                    .iter()
                    .position(|b| matches!(b, b'}' | b':' | b'!' | b'{'))
                    .map(|p| name_start + p);
                let Some(stop) = stop else {
                    return Err(ParseFail::new(
                        i,
                        "unclosed '{' (expected '}'; write '{{' for a literal brace)",
                    ));
                };
                let name = &text[name_start..stop];
                match bytes[stop] {
                    b':' => {
                        return Err(ParseFail::new(
                            i,
                            "format specs like {x:>10} are not supported",
                        ));
                    }
                    b'!' => {
                        return Err(ParseFail::new(
                            i,
                            "conversions like {x!r} are not supported",
                        ));
                    }
                    b'{' => return Err(ParseFail::new(i, "unexpected '{' inside a field")),
                    _ => {}
                }
                if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseFail::new(
                        i,
                        "positional fields like {} or {0} are not supported (name the variable)",
                    ));
                }
                if !is_dotted_identifier(name) {
                    return Err(ParseFail::new(i, invalid_name(name)));
                }
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
                pieces.push(Piece::Var(name));
                i = stop + 1;
                literal_start = i;
            }
            _ => i += 1,
        }
    }
    literal.push_str(&text[literal_start..]);
    pieces.push(Piece::Text(literal));
    Ok(pieces)
}
