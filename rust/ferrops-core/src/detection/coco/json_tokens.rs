//! The strict JSON reader that judges a COCO file: RFC 8259 JSON in UTF-8,
//! nested at most [`MAX_DEPTH`] levels. A file the loader accepts is read by
//! this reader without error, and its tokens are what Python's `json` module
//! would make of it (integers of any size, floats correctly rounded and
//! `inf` beyond the double range, lone surrogate escapes kept), so that the
//! Python `dataset` view is built from them and never disagrees with the load.
//!
//! The reader is a pull tokenizer with an explicit stack (no recursion): the
//! binding pulls tokens to build Python objects; [`check_json`] pulls them to
//! validate the rare files the fast scanner declines.

/// The deepest nesting of arrays and objects a COCO file may use. Python's
/// own tools recurse per level (`copy.deepcopy` twice), so a deeper document
/// would fail later with a `RecursionError`.
pub const MAX_DEPTH: usize = 128;

/// Where and why a text is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{} at line {} column {}", self.reason, self.line, self.column)
    }
}

/// A string's text between its quotes, escapes not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    pub raw: &'a [u8],
    pub escaped: bool,
}

/// A decoded string: UTF-8 text, or, when it holds an unpaired surrogate
/// escape (valid JSON, kept by Python), the bytes with each surrogate encoded
/// as UTF-8 would encode it (Python's `surrogatepass`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    Text(std::borrow::Cow<'a, str>),
    WithSurrogates(Vec<u8>),
}

impl<'a> JsonStr<'a> {
    /// The string's value, its escapes decoded as Python's `json` decodes them
    /// (a high surrogate escape followed by a low one is one character).
    pub fn decode(&self) -> Decoded<'a> {
        if !self.escaped {
            // Checked by the reader: the raw text is UTF-8.
            return Decoded::Text(String::from_utf8_lossy(self.raw));
        }
        let (b, mut out, mut i, mut lone) = (self.raw, Vec::with_capacity(self.raw.len()), 0, false);
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let c = b[i + 1];
            i += 2;
            let simple = match c {
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => 0,
                other => other,
            };
            if c != b'u' {
                out.push(simple);
                continue;
            }
            let mut unit = hex4(&b[i..i + 4]);
            i += 4;
            if (0xD800..0xDC00).contains(&unit) && b[i..].starts_with(b"\\u") {
                let low = hex4(&b[i + 2..i + 6]);
                if (0xDC00..0xE000).contains(&low) {
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                }
            }
            lone |= (0xD800..0xE000).contains(&unit);
            push_code_point(&mut out, unit);
        }
        if lone {
            Decoded::WithSurrogates(out)
        } else {
            Decoded::Text(std::borrow::Cow::Owned(String::from_utf8(out).expect("decoded from checked UTF-8")))
        }
    }
}

fn hex4(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, &c| acc * 16 + (c as char).to_digit(16).expect("checked by the reader"))
}

/// UTF-8's encoding of a code point, surrogates included.
fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend([0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => {
            out.extend([0xE0 | (cp >> 12) as u8, 0x80 | ((cp >> 6) & 0x3F) as u8, 0x80 | (cp & 0x3F) as u8])
        }
        _ => out.extend([
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
    }
}

/// The string opening at `b[at]` (a `"`): the index past its closing quote and
/// whether it holds escapes; `Err` with the offset and reason if it is not a
/// valid JSON string (bad escape, control character, invalid UTF-8, no end).
pub(super) fn scan_string(b: &[u8], at: usize) -> Result<(usize, bool), (usize, &'static str)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        match b.get(i) {
            None => return Err((i, "EOF while parsing a string")),
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let hex = b.get(i + 2..i + 6).ok_or((i, "EOF while parsing a string"))?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err((i, "invalid \\u escape"));
                        }
                        i += 6;
                    }
                    None => return Err((i, "EOF while parsing a string")),
                    Some(_) => return Err((i, "invalid escape")),
                }
            }
            Some(&c) if c < 0x20 => return Err((i, "control character in a string")),
            Some(&c) if c < 0x80 => i += 1,
            Some(&c) => {
                let width = match c {
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF4 => 4,
                    _ => return Err((i, "invalid UTF-8")),
                };
                let sequence = b.get(i..i + width).ok_or((i, "invalid UTF-8"))?;
                if std::str::from_utf8(sequence).is_err() {
                    return Err((i, "invalid UTF-8"));
                }
                i += width;
            }
        }
    }
}

/// One token of a JSON text, in document order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonToken<'a> {
    ArrayStart,
    ArrayEnd,
    ObjectStart,
    ObjectEnd,
    /// An object member's key (its value's tokens follow).
    Key(JsonStr<'a>),
    Str(JsonStr<'a>),
    Int(i64),
    /// An integer beyond `i64`, as written (Python reads any integer).
    BigInt(&'a str),
    /// Correctly rounded; infinite beyond the double range, as Python's `float`.
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value (at the top, after `:` or `,` in an array), or `]` after `[`.
    Value {
        or_close: bool,
    },
    /// A key (after `,` in an object), or `}` after `{`.
    Key {
        or_close: bool,
    },
    /// `,` or the container's close after a member.
    AfterValue,
    Done,
}

/// A pull tokenizer over a whole JSON text.
pub struct JsonTokens<'a> {
    b: &'a [u8],
    i: usize,
    /// `[` or `{` per open container.
    stack: Vec<u8>,
    state: State,
}

impl<'a> JsonTokens<'a> {
    pub fn new(json: &'a [u8]) -> Self {
        JsonTokens { b: json, i: 0, stack: Vec::new(), state: State::Value { or_close: false } }
    }

    fn error(&self, offset: usize, reason: &'static str) -> JsonError {
        let before = &self.b[..offset.min(self.b.len())];
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let column = 1 + before.iter().rev().take_while(|&&c| c != b'\n').count();
        JsonError { offset, line, column, reason }
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn after_value(&mut self) {
        self.state = if self.stack.is_empty() { State::Done } else { State::AfterValue };
    }

    fn string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        let start = self.i;
        let (end, escaped) = scan_string(self.b, start).map_err(|(at, why)| self.error(at, why))?;
        self.i = end;
        Ok(JsonStr { raw: &self.b[start + 1..end - 1], escaped })
    }

    fn open(&mut self, bracket: u8) -> Result<(), JsonError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(self.i, "nesting deeper than 128 levels"));
        }
        self.stack.push(bracket);
        self.i += 1;
        Ok(())
    }

    fn number(&mut self) -> Result<JsonToken<'a>, JsonError> {
        let start = self.i;
        let digits = |b: &[u8], mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = start + usize::from(self.b[start] == b'-');
        match self.b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(self.b, i),
            _ => return Err(self.error(i, "expected a value")),
        }
        let mut integer = true;
        if self.b.get(i) == Some(&b'.') {
            integer = false;
            if !self.b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                return Err(self.error(i + 1, "invalid number"));
            }
            i = digits(self.b, i + 1);
        }
        if matches!(self.b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(self.b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !self.b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(self.error(i, "invalid number"));
            }
            i = digits(self.b, i);
        }
        self.i = i;
        // ASCII digits, signs, '.' and 'e': UTF-8 by construction.
        let text = std::str::from_utf8(&self.b[start..i]).expect("ASCII");
        Ok(match (integer, text.parse::<i64>()) {
            (true, Ok(v)) => JsonToken::Int(v),
            (true, Err(_)) => JsonToken::BigInt(text),
            (false, _) => JsonToken::Float(text.parse().expect("a valid JSON number")),
        })
    }

    fn literal(&mut self, word: &'static [u8], token: JsonToken<'a>) -> Result<JsonToken<'a>, JsonError> {
        if !self.b[self.i..].starts_with(word) {
            return Err(self.error(self.i, "expected a value"));
        }
        self.i += word.len();
        Ok(token)
    }

    /// The next token, `None` after the whole text (trailing whitespace only).
    #[allow(clippy::should_implement_trait)] // fallible: not an Iterator
    pub fn next(&mut self) -> Result<Option<JsonToken<'a>>, JsonError> {
        loop {
            self.ws();
            let Some(&c) = self.b.get(self.i) else {
                return match self.state {
                    State::Done => Ok(None),
                    _ => Err(self.error(self.i, "EOF while parsing a value")),
                };
            };
            match self.state {
                State::Done => return Err(self.error(self.i, "trailing characters")),
                State::AfterValue => {
                    let top = *self.stack.last().expect("inside a container");
                    match (c, top) {
                        (b',', b'[') => self.state = State::Value { or_close: false },
                        (b',', _) => self.state = State::Key { or_close: false },
                        (b']', b'[') | (b'}', b'{') => {
                            self.i += 1;
                            self.stack.pop();
                            self.after_value();
                            return Ok(Some(if c == b']' { JsonToken::ArrayEnd } else { JsonToken::ObjectEnd }));
                        }
                        _ => return Err(self.error(self.i, "expected ',' or the end of the container")),
                    }
                    self.i += 1;
                }
                State::Key { or_close } => {
                    if or_close && c == b'}' {
                        self.i += 1;
                        self.stack.pop();
                        self.after_value();
                        return Ok(Some(JsonToken::ObjectEnd));
                    }
                    if c != b'"' {
                        return Err(self.error(self.i, "expected a string key"));
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(self.error(self.i, "expected ':'"));
                    }
                    self.i += 1;
                    self.state = State::Value { or_close: false };
                    return Ok(Some(JsonToken::Key(key)));
                }
                State::Value { or_close } => {
                    let token = match c {
                        b']' if or_close => {
                            self.i += 1;
                            self.stack.pop();
                            JsonToken::ArrayEnd
                        }
                        b'[' => {
                            self.open(b'[')?;
                            self.state = State::Value { or_close: true };
                            return Ok(Some(JsonToken::ArrayStart));
                        }
                        b'{' => {
                            self.open(b'{')?;
                            self.state = State::Key { or_close: true };
                            return Ok(Some(JsonToken::ObjectStart));
                        }
                        b'"' => JsonToken::Str(self.string()?),
                        b't' => self.literal(b"true", JsonToken::Bool(true))?,
                        b'f' => self.literal(b"false", JsonToken::Bool(false))?,
                        b'n' => self.literal(b"null", JsonToken::Null)?,
                        _ => self.number()?,
                    };
                    self.after_value();
                    return Ok(Some(token));
                }
            }
        }
    }
}

/// Checks that `json` is one acceptable JSON text (see the module's note).
pub fn check_json(json: &[u8]) -> Result<(), JsonError> {
    let mut tokens = JsonTokens::new(json);
    while tokens.next()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &[u8]) -> Result<Vec<String>, JsonError> {
        let mut t = JsonTokens::new(text);
        let mut out = Vec::new();
        while let Some(token) = t.next()? {
            out.push(match token {
                JsonToken::Key(s) | JsonToken::Str(s) => format!("{:?}", s.decode()),
                other => format!("{other:?}"),
            });
        }
        Ok(out)
    }

    #[test]
    fn reads_what_python_reads() {
        let t = tokens(br#" {"a": [1, -0, 2.5e1, 1e400, 123456789012345678901, true, null, {}], "b\u00e9\ud83d\ude00": "\ud800x"} "#)
            .unwrap();
        assert_eq!(t[4], "Int(0)");
        assert_eq!(t[5], "Float(25.0)");
        assert_eq!(t[6], "Float(inf)");
        assert_eq!(t[7], "BigInt(\"123456789012345678901\")");
        assert_eq!(t[13], format!("{:?}", Decoded::Text("bé😀".into())));
        assert_eq!(t[14], format!("{:?}", Decoded::WithSurrogates(vec![0xED, 0xA0, 0x80, b'x'])));
    }

    #[test]
    fn rejects_what_is_not_json() {
        let bad: &[(&[u8], &str)] = &[
            (b"", "EOF while parsing a value"),
            (b"[1,]", "expected a value"),
            (b"{\"a\" 1}", "expected ':'"),
            (b"[1] 2", "trailing characters"),
            (b"\"\xff\"", "invalid UTF-8"),
            (b"\"\xed\xa0\x80\"", "invalid UTF-8"),
            (b"\"\\x\"", "invalid escape"),
            (b"\"\\u12G4\"", "invalid \\u escape"),
            (b"[01]", "expected ',' or the end of the container"),
            (b"[1.]", "invalid number"),
            (b"[NaN]", "expected a value"),
            (b"{\"a\":1,}", "expected a string key"),
        ];
        for (text, reason) in bad {
            assert_eq!(check_json(text).unwrap_err().reason, *reason, "{}", String::from_utf8_lossy(text));
        }
        let deep = [vec![b'['; MAX_DEPTH], vec![b']'; MAX_DEPTH]].concat();
        assert!(check_json(&deep).is_ok());
        let deeper = [vec![b'['; MAX_DEPTH + 1], vec![b']'; MAX_DEPTH + 1]].concat();
        assert_eq!(check_json(&deeper).unwrap_err().reason, "nesting deeper than 128 levels");
        let e = check_json(b"{\n  \"a\": tru}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8));
    }
}
