//! A strict JSON text parser producing [`Node`]s, keeping numbers' exact decimal text.
//!
//! Used by tests and tools to build jsonb bytes without a database; accepts what
//! PostgreSQL's `jsonb_in` accepts (RFC 8259 JSON, no `\u0000`).

use super::numeric::encode_decimal;
use super::{Node, MAX_DEPTH};
use std::borrow::Cow;

/// Why JSON text was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the problem.
    pub at: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.at, self.what)
    }
}

impl std::error::Error for ParseError {}

/// Parses one JSON value (surrounding whitespace allowed).
///
/// Containers nested deeper than [`MAX_DEPTH`] are refused ("nesting too deep"); the
/// parser itself is iterative, so it uses the same machine stack at any depth.
pub fn parse_json(text: &str) -> Result<Node<'static>, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'s> {
    s: &'s [u8],
    i: usize,
}

/// A container being parsed.
enum Open {
    Array(Vec<Node<'static>>),
    /// The pairs so far, and the key of the value being parsed.
    Object(Vec<(Cow<'static, [u8]>, Node<'static>)>, Vec<u8>),
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> ParseError {
        ParseError { at: self.i, what }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    /// One value at `self.i`, containers included: the open containers live on a heap
    /// stack instead of the machine stack.
    fn value(&mut self) -> Result<Node<'static>, ParseError> {
        let mut open: Vec<Open> = Vec::new();
        loop {
            // A value starts here: a scalar, an empty container, or an opening bracket.
            let mut done = match self.s.get(self.i) {
                None => return Err(self.err("unexpected end")),
                Some(b'{') | Some(b'[') => {
                    if open.len() >= MAX_DEPTH {
                        return Err(self.err("nesting too deep"));
                    }
                    let array = self.s[self.i] == b'[';
                    self.i += 1;
                    self.ws();
                    if array {
                        if self.eat(b"]") {
                            Node::Array(Vec::new())
                        } else {
                            open.push(Open::Array(Vec::new()));
                            self.ws();
                            continue;
                        }
                    } else if self.eat(b"}") {
                        Node::Object(Vec::new())
                    } else {
                        let key = self.key()?;
                        open.push(Open::Object(Vec::new(), key));
                        continue;
                    }
                }
                Some(b'"') => Node::Str(Cow::Owned(self.string()?.into_bytes())),
                Some(b't') if self.eat(b"true") => Node::Bool(true),
                Some(b'f') if self.eat(b"false") => Node::Bool(false),
                Some(b'n') if self.eat(b"null") => Node::Null,
                Some(c) if *c == b'-' || c.is_ascii_digit() => self.number()?,
                Some(_) => return Err(self.err("unexpected character")),
            };
            // Hand the value to its container; close containers that end here.
            loop {
                let Some(top) = open.last_mut() else {
                    return Ok(done);
                };
                match top {
                    Open::Array(items) => {
                        items.push(done);
                        self.ws();
                        if self.eat(b",") {
                            self.ws();
                            break;
                        }
                        if !self.eat(b"]") {
                            return Err(self.err("expected , or ]"));
                        }
                    }
                    Open::Object(pairs, key) => {
                        pairs.push((Cow::Owned(std::mem::take(key)), done));
                        self.ws();
                        if self.eat(b",") {
                            *key = self.key()?;
                            break;
                        }
                        if !self.eat(b"}") {
                            return Err(self.err("expected , or }"));
                        }
                    }
                }
                done = match open.pop() {
                    Some(Open::Array(items)) => Node::Array(items),
                    Some(Open::Object(pairs, _)) => Node::Object(pairs),
                    None => return Err(self.err("internal: no open container")),
                };
            }
        }
    }

    /// An object key and its colon, whitespace around them skipped.
    fn key(&mut self) -> Result<Vec<u8>, ParseError> {
        self.ws();
        if self.s.get(self.i) != Some(&b'"') {
            return Err(self.err("expected object key"));
        }
        let k = self.string()?;
        self.ws();
        if !self.eat(b":") {
            return Err(self.err("expected :"));
        }
        self.ws();
        Ok(k.into_bytes())
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or(self.err("short \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'"' && self.s[self.i] != b'\\' {
                if self.s[self.i] < 0x20 {
                    return Err(self.err("control character in string"));
                }
                self.i += 1;
            }
            let chunk = std::str::from_utf8(&self.s[start..self.i])
                .map_err(|_| self.err("invalid UTF-8"))?;
            out.push_str(chunk);
            match self.s.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.i += 1;
                    let c = *self.s.get(self.i).ok_or(self.err("unterminated escape"))?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                if !self.eat(b"\\u") {
                                    return Err(self.err("lone surrogate"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("bad surrogate pair"));
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(self.err("lone surrogate"));
                            }
                            if cp == 0 {
                                return Err(self.err("\\u0000 cannot be stored in jsonb"));
                            }
                            out.push(char::from_u32(cp).ok_or(self.err("bad code point"))?);
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
            }
        }
    }

    fn number(&mut self) -> Result<Node<'static>, ParseError> {
        let start = self.i;
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        let int_len = self.i - int_start;
        if int_len == 0 || (int_len > 1 && self.s[int_start] == b'0') {
            return Err(self.err("bad number"));
        }
        if self.eat(b".") {
            let f = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if self.i == f {
                return Err(self.err("bad fraction"));
            }
        }
        if self.i < self.s.len() && (self.s[self.i] == b'e' || self.s[self.i] == b'E') {
            self.i += 1;
            if self.i < self.s.len() && (self.s[self.i] == b'+' || self.s[self.i] == b'-') {
                self.i += 1;
            }
            let e = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if self.i == e {
                return Err(self.err("bad exponent"));
            }
        }
        let text =
            std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("bad number"))?;
        let n = encode_decimal(text).map_err(|e| ParseError {
            at: start,
            what: e.0,
        })?;
        Ok(Node::Num(Cow::Owned(n)))
    }
}
