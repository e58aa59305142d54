//! The JSON reader behind a mapping's single pass: it reads a record that is already known to be UTF-8
//! byte by byte, checks the whole grammar (skipped values included), and builds nothing it is not asked
//! for. Strings come back borrowed unless they have escapes; numbers are parsed only when kept.

use std::borrow::Cow;

use super::walk::Scalar;

/// How deep arrays and objects may nest, as serde_json allows by default.
pub const MAX_DEPTH: usize = 128;

/// Why a record is not valid JSON, with where: `expected value at line 1 column 7`.
pub type LexError = String;

/// A cursor over one JSON text.
pub struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

impl<'a> Lexer<'a> {
    /// A cursor at the start of `text`.
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer { text, bytes: text.as_bytes(), pos: 0 }
    }

    /// The next byte that is not whitespace, without taking it.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes.get(self.pos) {
            if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(byte);
            }
            self.pos += 1;
        }
        None
    }

    /// Takes `byte` if it comes next.
    #[inline]
    pub fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.pos += usize::from(next);
        next
    }

    /// After `{` or `[`: whether the container is empty, its `close` taken.
    #[inline]
    pub fn open(&mut self, close: u8, depth: usize) -> Result<bool, LexError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(&format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.pos += 1;
        Ok(self.eat(close))
    }

    /// After a member or element: whether another follows (`,` taken) or the container ends (`close` taken).
    #[inline]
    pub fn next(&mut self, close: u8) -> Result<bool, LexError> {
        if self.eat(b',') {
            return Ok(true);
        }
        if self.eat(close) {
            return Ok(false);
        }
        Err(self.unexpected(if close == b'}' { "`,` or `}`" } else { "`,` or `]`" }))
    }

    /// An object member's key and its `:`.
    #[inline]
    pub fn key(&mut self) -> Result<Cow<'a, str>, LexError> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string key"));
        }
        let key = self.string()?;
        if !self.eat(b':') {
            return Err(self.unexpected("`:`"));
        }
        Ok(key)
    }

    /// A scalar value: `None` for null. An object or array here is an error; callers check first.
    pub fn scalar(&mut self) -> Result<Option<Scalar<'a>>, LexError> {
        match self.peek() {
            Some(b'"') => self.string().map(|text| Some(Scalar::Text(text))),
            Some(b'-' | b'0'..=b'9') => self.number().map(Some),
            Some(b't') => self.literal("true").map(|()| Some(Scalar::Flag(true))),
            Some(b'f') => self.literal("false").map(|()| Some(Scalar::Flag(false))),
            Some(b'n') => self.literal("null").map(|()| None),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// Checks and passes over one value of any kind.
    pub fn skip(&mut self, depth: usize) -> Result<(), LexError> {
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{') => {
                if self.open(b'}', depth)? {
                    return Ok(());
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(self.unexpected("a string key"));
                    }
                    self.skip_string()?;
                    if !self.eat(b':') {
                        return Err(self.unexpected("`:`"));
                    }
                    self.skip(depth + 1)?;
                    if !self.next(b'}')? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                if self.open(b']', depth)? {
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if !self.next(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number_text().map(drop),
            _ => self.scalar().map(drop),
        }
    }

    /// Checks that nothing but whitespace follows the value.
    pub fn end(&mut self) -> Result<(), LexError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// A string at its opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, LexError> {
        let start = self.pos + 1;
        let end = self.plain_run(start);
        match self.bytes.get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                Ok(Cow::Borrowed(&self.text[start..end]))
            }
            _ => self.escaped(start, end).map(Cow::Owned),
        }
    }

    fn skip_string(&mut self) -> Result<(), LexError> {
        let mut at = self.plain_run(self.pos + 1);
        loop {
            match self.bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => at = self.unescape(at + 1, None)?,
                other => return Err(self.string_error(at, other)),
            }
            at = self.plain_run(at);
        }
    }

    /// The rest of a string from its first escape (or bad byte) at `at`.
    fn escaped(&mut self, start: usize, mut at: usize) -> Result<String, LexError> {
        let mut out = String::with_capacity(at - start + 16);
        out.push_str(&self.text[start..at]);
        loop {
            match self.bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(out);
                }
                Some(b'\\') => at = self.unescape(at + 1, Some(&mut out))?,
                other => return Err(self.string_error(at, other)),
            }
            let end = self.plain_run(at);
            out.push_str(&self.text[at..end]);
            at = end;
        }
    }

    fn string_error(&mut self, at: usize, byte: Option<&u8>) -> LexError {
        self.pos = at;
        match byte {
            None => self.error("EOF while parsing a string"),
            Some(_) => self.error("control character (\\u0000-\\u001F) found while parsing a string"),
        }
    }

    /// The escape after a backslash at `at`, written to `out` if given; returns the position after it.
    fn unescape(&mut self, at: usize, out: Option<&mut String>) -> Result<usize, LexError> {
        let simple = match self.bytes.get(at) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let (code, mut next) = self.hex4(at + 1)?;
                let code = match code {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(next..next + 2) != Some(b"\\u") {
                            return Err(self.error_at(next, "lone leading surrogate in hex escape"));
                        }
                        let (low, after) = self.hex4(next + 2)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error_at(next, "lone leading surrogate in hex escape"));
                        }
                        next = after;
                        0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(self.error_at(at, "lone trailing surrogate in hex escape")),
                    code => code,
                };
                if let (Some(out), Some(char)) = (out, char::from_u32(code)) {
                    out.push(char);
                }
                return Ok(next);
            }
            _ => return Err(self.error_at(at, "invalid escape")),
        };
        if let Some(out) = out {
            out.push(simple);
        }
        Ok(at + 1)
    }

    fn hex4(&mut self, at: usize) -> Result<(u32, usize), LexError> {
        let digits = self.bytes.get(at..at + 4).and_then(|digits| std::str::from_utf8(digits).ok());
        match digits.and_then(|digits| u32::from_str_radix(digits, 16).ok()) {
            Some(code) if digits.is_some_and(|digits| digits.bytes().all(|byte| byte.is_ascii_hexdigit())) => {
                Ok((code, at + 4))
            }
            _ => Err(self.error_at(at, "invalid \\u escape")),
        }
    }

    /// The position of the first quote, backslash or control character at or after `at`, eight bytes at a
    /// time; the end of the text if there is none.
    #[inline]
    fn plain_run(&self, mut at: usize) -> usize {
        while let Some(chunk) = self.bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
            let word = u64::from_le_bytes(*chunk);
            let quote = word ^ (ONES * u64::from(b'"'));
            let backslash = word ^ (ONES * u64::from(b'\\'));
            let found = (quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (word.wrapping_sub(ONES * 0x20) & !word);
            let found = found & HIGHS;
            if found != 0 {
                return at + (found.trailing_zeros() / 8) as usize;
            }
            at += 8;
        }
        while let Some(&byte) = self.bytes.get(at) {
            if byte == b'"' || byte == b'\\' || byte < 0x20 {
                return at;
            }
            at += 1;
        }
        at
    }

    fn number(&mut self) -> Result<Scalar<'a>, LexError> {
        let start = self.pos;
        let (text, integer) = self.number_text()?;
        if integer && let Ok(number) = text.parse::<i64>() {
            return Ok(Scalar::Int(number));
        }
        match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(Scalar::Float(number)),
            _ => Err(self.error_at(start, "number out of range")),
        }
    }

    /// A number's text, checked against JSON's grammar, and whether it has neither fraction nor exponent.
    fn number_text(&mut self) -> Result<(&'a str, bool), LexError> {
        let bytes = self.bytes;
        let start = self.pos;
        let mut at = start + usize::from(bytes.get(start) == Some(&b'-'));
        let digits =
            |at: usize| bytes.get(at..).map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_digit()).count());
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at += digits(at),
            _ => return Err(self.error_at(at, "invalid number")),
        }
        let mut integer = true;
        if bytes.get(at) == Some(&b'.') {
            integer = false;
            let fraction = digits(at + 1);
            if fraction == 0 {
                return Err(self.error_at(at + 1, "invalid number"));
            }
            at += 1 + fraction;
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            integer = false;
            at += 1 + usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
            let exponent = digits(at);
            if exponent == 0 {
                return Err(self.error_at(at, "invalid number"));
            }
            at += exponent;
        }
        self.pos = at;
        Ok((&self.text[start..at], integer))
    }

    fn literal(&mut self, word: &str) -> Result<(), LexError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word.as_bytes()) {
            self.pos += word.len();
            return Ok(());
        }
        Err(self.unexpected("a value"))
    }

    fn unexpected(&self, expected: &str) -> LexError {
        match self.bytes.get(self.pos) {
            None => self.error(&format!("EOF where {expected} was expected")),
            Some(_) => self.error(&format!("expected {expected}")),
        }
    }

    fn error_at(&mut self, at: usize, message: &str) -> LexError {
        self.pos = at;
        self.error(message)
    }

    /// `message` with the line and column of the cursor, both from 1, the column in bytes.
    fn error(&self, message: &str) -> LexError {
        let before = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&byte| byte != b'\n').count() + 1;
        format!("{message} at line {line} column {column}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(text: &str) -> Result<(), LexError> {
        let mut lexer = Lexer::new(text);
        lexer.skip(0)?;
        lexer.end()
    }

    fn scalar(text: &str) -> Option<Scalar<'_>> {
        Lexer::new(text).scalar().unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn valid_json_is_skipped_whole() {
        for text in [
            r#"{"a":[1,-2.5e+3,0,true,false,null,{"b":"c\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}],"d":{}, "e" : [ ] }"#,
            " 12 ",
            r#""a long plain string with no escapes at all, longer than one word""#,
        ] {
            assert_eq!(skip(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn invalid_json_is_rejected_with_where() {
        for (text, expected) in [
            (r#"{"a":1"#, "EOF where `,` or `}` was expected at line 1 column 7"),
            (r#"{"a":1,}"#, "expected a string key at line 1 column 8"),
            (r#"{"a" 1}"#, "expected `:` at line 1 column 6"),
            ("[1 2]", "expected `,` or `]` at line 1 column 4"),
            (r#"{"a":tru}"#, "expected a value at line 1 column 6"),
            (r#"{"a":01}"#, "expected `,` or `}` at line 1 column 7"),
            ("{\"a\":1.}", "invalid number at line 1 column 8"),
            ("{\"a\":-}", "invalid number at line 1 column 7"),
            ("{\"a\":1e}", "invalid number at line 1 column 8"),
            ("\"a\u{1}\"", "control character"),
            (r#""\x""#, "invalid escape at line 1 column 3"),
            (r#""\u12g4""#, "invalid \\u escape"),
            (r#""\ud800""#, "lone leading surrogate"),
            (r#""\udc00""#, "lone trailing surrogate"),
            (r#""abc"#, "EOF while parsing a string"),
            ("{}\n x", "trailing characters at line 2 column 2"),
            ("", "EOF where a value was expected"),
        ] {
            let err = skip(text).err().unwrap_or_else(|| panic!("{text:?} passed"));
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(skip(&deep).is_err_and(|err| err.contains("nested deeper")));
        let allowed = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(skip(&allowed), Ok(()));
    }

    #[test]
    fn scalars_are_read_as_json_defines_them() {
        assert_eq!(scalar(r#""plain""#), Some(Scalar::Text(Cow::Borrowed("plain"))));
        assert_eq!(scalar(r#""a\"b\u00e9\ud83d\ude00""#), Some(Scalar::Text(Cow::Owned("a\"bé😀".to_owned()))));
        assert_eq!(scalar("-42"), Some(Scalar::Int(-42)));
        assert_eq!(scalar("9223372036854775808"), Some(Scalar::Float(9_223_372_036_854_775_808.0)));
        assert_eq!(scalar("2.5e-1"), Some(Scalar::Float(0.25)));
        assert_eq!(scalar("true"), Some(Scalar::Flag(true)));
        assert_eq!(scalar("null"), None);
        assert!(Lexer::new("1e999").scalar().is_err_and(|err| err.contains("out of range")));
    }

    proptest::proptest! {
        /// Whatever serde_json accepts, the lexer accepts, and the other way round; strings read the same.
        #[test]
        fn agrees_with_serde_json(text in r#"[\[\]{}",:0-9a-z\\. \-+eE]{0,24}"#) {
            let ours = skip(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            // A skipped number is checked against the grammar, not parsed: one too large for f64 passes.
            let out_of_range = theirs.as_ref().is_err_and(|err| err.to_string().contains("out of range"));
            proptest::prop_assert_eq!(ours.is_ok(), theirs.is_ok() || out_of_range, "{:?}: {:?}", text, ours);
        }

        #[test]
        fn strings_read_as_serde_json_reads_them(value in "\\PC{0,40}") {
            let json = serde_json::to_string(&value).unwrap_or_default();
            let read = Lexer::new(&json).scalar();
            proptest::prop_assert_eq!(read, Ok(Some(Scalar::Text(Cow::Owned(value)))));
        }
    }
}
