//! A recursive-descent parser for RFC 7644 §3.4.2.2 filters. Precedence, from loosest:
//! `or`, `and`, `not` / parentheses / value paths. Depth and length are bounded, so hostile
//! input costs at most linear time and bounded stack.

use super::{CompValue, CompareOp, Filter};
use crate::path::AttrPath;

/// Bounds on what the parser accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Longest filter accepted, in bytes.
    pub max_len: usize,
    /// Deepest nesting of parentheses, `not` and value filters.
    pub max_depth: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_len: 8192,
            max_depth: 32,
        }
    }
}

/// A filter that does not parse: the byte offset where it went wrong and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at byte {position}: {message}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl From<FilterError> for crate::ScimError {
    fn from(e: FilterError) -> Self {
        crate::ScimError::invalid_filter(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Word(String),
    Str(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
}

fn describe(tok: Option<&Token>) -> String {
    match tok.map(|t| &t.tok) {
        None => "the end of the filter".into(),
        Some(Tok::LParen) => "'('".into(),
        Some(Tok::RParen) => "')'".into(),
        Some(Tok::LBracket) => "'['".into(),
        Some(Tok::RBracket) => "']'".into(),
        Some(Tok::Word(w)) => format!("'{w}'"),
        Some(Tok::Str(_)) => "a string".into(),
    }
}

fn err(position: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        position,
        message: message.into(),
    }
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let tok = match bytes[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b'"' => {
                let (s, end) = lex_string(text, i)?;
                tokens.push(Token {
                    tok: Tok::Str(s),
                    start,
                });
                i = end;
                continue;
            }
            _ => {
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'[' | b']' | b'"'
                    )
                {
                    i += 1;
                }
                tokens.push(Token {
                    tok: Tok::Word(text[start..i].to_string()),
                    start,
                });
                continue;
            }
        };
        tokens.push(Token { tok, start });
        i += 1;
    }
    Ok(tokens)
}

/// Decodes a JSON string literal starting at the quote at `start`; returns it and the offset
/// just past the closing quote.
fn lex_string(text: &str, start: usize) -> Result<(String, usize), FilterError> {
    let mut out = String::new();
    let mut chars = text[start + 1..]
        .char_indices()
        .map(|(i, c)| (i + start + 1, c));
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let (j, e) = chars
                    .next()
                    .ok_or_else(|| err(i, "unterminated escape sequence"))?;
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let high = read_hex4(text, j + 1)?;
                        for _ in 0..4 {
                            chars.next();
                        }
                        let code = if (0xD800..0xDC00).contains(&high) {
                            let low_at = j + 5;
                            let is_pair = text.get(low_at..low_at + 2) == Some("\\u");
                            let low = if is_pair {
                                read_hex4(text, low_at + 2)?
                            } else {
                                0
                            };
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err(err(
                                    i,
                                    "a high surrogate escape must be followed by a low surrogate",
                                ));
                            }
                            for _ in 0..6 {
                                chars.next();
                            }
                            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            high
                        };
                        out.push(
                            char::from_u32(code)
                                .ok_or_else(|| err(i, "escape is not a valid character"))?,
                        );
                    }
                    other => return Err(err(i, format!("invalid escape '\\{other}' in string"))),
                }
            }
            c => out.push(c),
        }
    }
    Err(err(start, "unterminated string: missing closing '\"'"))
}

fn read_hex4(text: &str, at: usize) -> Result<u32, FilterError> {
    text.get(at..at + 4)
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| err(at, "expected four hex digits after '\\u'"))
}

/// Parses `text` as a filter.
pub fn parse_filter(text: &str, limits: &ParseLimits) -> Result<Filter, FilterError> {
    if text.len() > limits.max_len {
        return Err(err(
            limits.max_len,
            format!("filter is longer than {} bytes", limits.max_len),
        ));
    }
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(err(0, "filter is empty"));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        limits: *limits,
        end: text.len(),
    };
    let filter = parser.or_expr(0, false)?;
    match parser.peek() {
        None => Ok(filter),
        Some(t) => Err(err(
            t.start,
            format!(
                "unexpected {}; expected 'and', 'or' or the end of the filter",
                describe(Some(t))
            ),
        )),
    }
}

/// Parses the filter inside a PATCH path's brackets: its attribute paths are relative.
pub(crate) fn parse_value_filter(text: &str, limits: &ParseLimits) -> Result<Filter, FilterError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(err(0, "value filter is empty"));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        limits: *limits,
        end: text.len(),
    };
    let filter = parser.or_expr(1, true)?;
    match parser.peek() {
        None => Ok(filter),
        Some(t) => Err(err(
            t.start,
            format!(
                "unexpected {}; expected 'and', 'or' or ']'",
                describe(Some(t))
            ),
        )),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    limits: ParseLimits,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn here(&self) -> usize {
        self.peek().map(|t| t.start).unwrap_or(self.end)
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), FilterError> {
        match self.peek() {
            Some(t) if t.tok == want => {
                self.pos += 1;
                Ok(())
            }
            other => Err(err(
                self.here(),
                format!("expected {what}, found {}", describe(other)),
            )),
        }
    }

    fn or_expr(&mut self, depth: usize, in_brackets: bool) -> Result<Filter, FilterError> {
        let mut items = vec![self.and_expr(depth, in_brackets)?];
        while self.peek_word("or") {
            self.pos += 1;
            items.push(self.and_expr(depth, in_brackets)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::Or(items)
        })
    }

    fn and_expr(&mut self, depth: usize, in_brackets: bool) -> Result<Filter, FilterError> {
        let mut items = vec![self.unary(depth, in_brackets)?];
        while self.peek_word("and") {
            self.pos += 1;
            items.push(self.unary(depth, in_brackets)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::And(items)
        })
    }

    fn unary(&mut self, depth: usize, in_brackets: bool) -> Result<Filter, FilterError> {
        if depth >= self.limits.max_depth {
            return Err(err(
                self.here(),
                format!("filter nests deeper than {} levels", self.limits.max_depth),
            ));
        }
        let Some(token) = self.peek().cloned() else {
            return Err(err(
                self.end,
                "expected an attribute path, '(' or 'not', found the end of the filter",
            ));
        };
        match token.tok {
            Tok::LParen => {
                self.pos += 1;
                let inner = self.or_expr(depth + 1, in_brackets)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::Word(ref w)
                if w.eq_ignore_ascii_case("not")
                    && matches!(
                        self.tokens.get(self.pos + 1),
                        Some(Token {
                            tok: Tok::LParen,
                            ..
                        })
                    ) =>
            {
                self.pos += 2;
                let inner = self.or_expr(depth + 1, in_brackets)?;
                self.expect(Tok::RParen, "')' closing 'not ('")?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Tok::Word(ref w) => {
                self.pos += 1;
                let path = parse_path_at(w, token.start)?;
                self.after_path(path, depth, in_brackets, token.start)
            }
            _ => Err(err(
                token.start,
                format!(
                    "expected an attribute path, '(' or 'not', found {}",
                    describe(Some(&token))
                ),
            )),
        }
    }

    fn after_path(
        &mut self,
        path: AttrPath,
        depth: usize,
        in_brackets: bool,
        start: usize,
    ) -> Result<Filter, FilterError> {
        if matches!(
            self.peek(),
            Some(Token {
                tok: Tok::LBracket,
                ..
            })
        ) {
            if in_brackets {
                return Err(err(
                    self.here(),
                    "a value filter cannot contain another value filter",
                ));
            }
            if path.sub.is_some() {
                return Err(err(
                    start,
                    "a value filter applies to an attribute, not to a sub-attribute",
                ));
            }
            self.pos += 1;
            let inner = self.or_expr(depth + 1, true)?;
            self.expect(Tok::RBracket, "']'")?;
            // `emails[type eq "work"].value eq "x"` is read as `emails[type eq "work" and value eq "x"]`.
            let sub_token = match self.peek() {
                Some(Token {
                    tok: Tok::Word(w),
                    start,
                }) if w.starts_with('.') => Some((w.clone(), *start)),
                _ => None,
            };
            let filter = match sub_token {
                None => inner,
                Some((word, sub_start)) => {
                    self.pos += 1;
                    let sub = parse_path_at(&word[1..], sub_start + 1)?;
                    if sub.urn.is_some() || sub.sub.is_some() {
                        return Err(err(
                            sub_start + 1,
                            "expected a sub-attribute name after ']'",
                        ));
                    }
                    let condition = self.comparison(sub)?;
                    match inner {
                        Filter::And(mut items) => {
                            items.push(condition);
                            Filter::And(items)
                        }
                        other => Filter::And(vec![other, condition]),
                    }
                }
            };
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(filter),
            });
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        let op_pos = self.here();
        let op_word = match self.peek() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) => w.clone(),
            other => {
                return Err(err(
                    op_pos,
                    format!(
                        "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr), found {}",
                        describe(other)
                    ),
                ))
            }
        };
        self.pos += 1;
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::from_word(&op_word).ok_or_else(|| {
            err(op_pos, format!("unknown operator '{op_word}'; expected eq, ne, co, sw, ew, gt, ge, lt, le or pr"))
        })?;
        let value_pos = self.here();
        let value = match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Str(s)) => CompValue::String(s),
            Some(Tok::Word(w)) => literal(&w).ok_or_else(|| {
                err(value_pos, format!("expected a value (a \"string\", a number, true, false or null), found '{w}'"))
            })?,
            _ => {
                return Err(err(
                    value_pos,
                    format!(
                        "expected a value (a \"string\", a number, true, false or null), found {}",
                        describe(self.peek())
                    ),
                ))
            }
        };
        self.pos += 1;
        Ok(Filter::Compare { path, op, value })
    }
}

fn literal(word: &str) -> Option<CompValue> {
    match word.to_ascii_lowercase().as_str() {
        "true" => Some(CompValue::Bool(true)),
        "false" => Some(CompValue::Bool(false)),
        "null" => Some(CompValue::Null),
        _ if word.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            serde_json::from_str::<serde_json::Number>(word)
                .ok()
                .map(CompValue::Number)
        }
        _ => None,
    }
}

fn parse_path_at(word: &str, offset: usize) -> Result<AttrPath, FilterError> {
    AttrPath::parse(word).map_err(|(at, message)| err(offset + at, message))
}
