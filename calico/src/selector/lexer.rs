//! Splits selector text into tokens, one at a time, with their byte spans.

use super::ErrorKind;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    /// A run of label characters: a label key, or a word such as `in`, `has` or `starts`.
    Word(String),
    /// A quoted string, without its quotes.
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    EqEq,
    NotEq,
    Bang,
    AndAnd,
    OrOr,
    Eof,
}

impl Tok {
    /// How an error message names this token.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::EqEq => "'=='".into(),
            Tok::NotEq => "'!='".into(),
            Tok::Bang => "'!'".into(),
            Tok::AndAnd => "'&&'".into(),
            Tok::OrOr => "'||'".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// A token and where it is: `start..end` in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// Characters of a label key (Calico's `[a-zA-Z0-9_./-]`).
pub(super) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// The tokenizer: call [`Lexer::next_token`] until it returns [`Tok::Eof`].
pub(super) struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(input: &'a str) -> Self {
        Lexer { input, pos: 0 }
    }

    /// The next token, or the error and its byte offset.
    pub(super) fn next_token(&mut self) -> Result<Token, (ErrorKind, usize)> {
        let bytes = self.input.as_bytes();
        while matches!(bytes.get(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&b) = bytes.get(start) else {
            return Ok(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
        };
        let next = bytes.get(start + 1).copied();
        let (tok, len) = match b {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b',' => (Tok::Comma, 1),
            b'!' if next == Some(b'=') => (Tok::NotEq, 2),
            b'!' => (Tok::Bang, 1),
            b'=' if next == Some(b'=') => (Tok::EqEq, 2),
            b'&' if next == Some(b'&') => (Tok::AndAnd, 2),
            b'|' if next == Some(b'|') => (Tok::OrOr, 2),
            b'=' | b'&' | b'|' => {
                let expected = match b {
                    b'=' => "'=='",
                    b'&' => "'&&'",
                    _ => "'||'",
                };
                let found = format!("'{}'", b as char);
                return Err((ErrorKind::Expected { expected, found }, start));
            }
            b'\'' | b'"' => {
                let body = start + 1;
                let Some(close) = self.input[body..].find(b as char) else {
                    return Err((ErrorKind::UnterminatedString, start));
                };
                let s = self.input[body..body + close].to_string();
                (Tok::Str(s), close + 2)
            }
            _ if is_label_byte(b) => {
                let len = bytes[start..]
                    .iter()
                    .position(|&c| !is_label_byte(c))
                    .unwrap_or(bytes.len() - start);
                (Tok::Word(self.input[start..start + len].to_string()), len)
            }
            _ => {
                let c = self.input[start..].chars().next().unwrap_or('\u{fffd}');
                return Err((ErrorKind::UnexpectedChar(c), start));
            }
        };
        self.pos = start + len;
        Ok(Token {
            tok,
            start,
            end: self.pos,
        })
    }
}
