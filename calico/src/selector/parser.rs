//! Recursive descent over the lexer's tokens (grammar in the module docs of `selector`).

use std::collections::BTreeSet;

use super::lexer::{Lexer, Tok, Token};
use super::{ErrorKind, MAX_DEPTH, Selector, SelectorError};

type PResult<T> = Result<T, (ErrorKind, usize)>;

/// A label operator.
#[derive(Clone, Copy)]
enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
}

const FUNCTIONS: [&str; 3] = ["has", "all", "global"];
const EXPECTED_OPERATOR: &str =
    "an operator (==, !=, in, not in, starts with, ends with, contains)";

/// Parses a whole selector; blank input is `all()`.
pub(super) fn parse(input: &str) -> Result<Selector, SelectorError> {
    parse_inner(input).map_err(|(kind, pos)| SelectorError {
        kind,
        pos,
        input: input.to_string(),
    })
}

fn parse_inner(input: &str) -> PResult<Selector> {
    let mut lexer = Lexer::new(input);
    let cur = lexer.next_token()?;
    let mut p = Parser {
        lexer,
        cur,
        depth: 0,
    };
    if p.cur.tok == Tok::Eof {
        return Ok(Selector::All);
    }
    let sel = p.or_expr()?;
    if p.cur.tok != Tok::Eof {
        return p.expected("'&&', '||' or end of input");
    }
    Ok(sel)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The lookahead token.
    cur: Token,
    /// Current nesting of `!` and `(`.
    depth: usize,
}

impl Parser<'_> {
    /// Moves to the next token, returning the one we were on.
    fn bump(&mut self) -> PResult<Token> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.cur, next))
    }

    fn expected<T>(&self, expected: &'static str) -> PResult<T> {
        Err((
            ErrorKind::Expected {
                expected,
                found: self.cur.tok.describe(),
            },
            self.cur.start,
        ))
    }

    /// Consumes `tok`, or fails saying `what` was expected.
    fn expect(&mut self, tok: Tok, what: &'static str) -> PResult<()> {
        if self.cur.tok != tok {
            return self.expected(what);
        }
        self.bump()?;
        Ok(())
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((ErrorKind::TooDeep, self.cur.start));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> PResult<Selector> {
        let first = self.and_expr()?;
        if self.cur.tok != Tok::OrOr {
            return Ok(first);
        }
        let mut ops = vec![first];
        while self.cur.tok == Tok::OrOr {
            self.bump()?;
            ops.push(self.and_expr()?);
        }
        Ok(Selector::Or(ops))
    }

    fn and_expr(&mut self) -> PResult<Selector> {
        let first = self.unary()?;
        if self.cur.tok != Tok::AndAnd {
            return Ok(first);
        }
        let mut ops = vec![first];
        while self.cur.tok == Tok::AndAnd {
            self.bump()?;
            ops.push(self.unary()?);
        }
        Ok(Selector::And(ops))
    }

    fn unary(&mut self) -> PResult<Selector> {
        if self.cur.tok != Tok::Bang {
            return self.primary();
        }
        self.enter()?;
        self.bump()?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Selector::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> PResult<Selector> {
        match &self.cur.tok {
            Tok::LParen => {
                self.enter()?;
                self.bump()?;
                let inner = self.or_expr()?;
                self.expect(Tok::RParen, "'&&', '||' or ')'")?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Word(_) => {
                let word = self.bump()?;
                let Tok::Word(name) = word.tok else {
                    return self.expected("a label");
                };
                if self.cur.tok == Tok::LParen {
                    if self.cur.start == word.end {
                        return self.function(name, word.start);
                    }
                    if FUNCTIONS.contains(&name.as_str()) {
                        return Err((ErrorKind::SpaceBeforeParen(name), word.end));
                    }
                }
                self.label_op(name)
            }
            _ => self.expected("a label, '(', '!', has(), all() or global()"),
        }
    }

    /// `name(` has been seen (the `(` is the current token); `start` is where `name` began.
    fn function(&mut self, name: String, start: usize) -> PResult<Selector> {
        if !FUNCTIONS.contains(&name.as_str()) {
            return Err((ErrorKind::UnknownFunction(name), start));
        }
        self.bump()?;
        let sel = match name.as_str() {
            "has" => match &self.cur.tok {
                Tok::Word(key) => {
                    let key = key.clone();
                    self.bump()?;
                    Selector::Has(key)
                }
                _ => return self.expected("a label"),
            },
            "all" => Selector::All,
            _ => Selector::Global,
        };
        self.expect(Tok::RParen, "')'")?;
        Ok(sel)
    }

    /// Parses the operator and operand after label `key`.
    fn label_op(&mut self, key: String) -> PResult<Selector> {
        // The operator, and for two-word operators the second word and how to ask for it.
        let (op, second) = match &self.cur.tok {
            Tok::EqEq => (Op::Eq, None),
            Tok::NotEq => (Op::Ne, None),
            Tok::Word(w) => match w.as_str() {
                "in" => (Op::In, None),
                "notin" => (Op::NotIn, None),
                "not" => (Op::NotIn, Some(("in", "'in' after 'not'"))),
                "startswith" => (Op::StartsWith, None),
                "starts" => (Op::StartsWith, Some(("with", "'with' after 'starts'"))),
                "endswith" => (Op::EndsWith, None),
                "ends" => (Op::EndsWith, Some(("with", "'with' after 'ends'"))),
                "contains" => (Op::Contains, None),
                _ => return self.expected(EXPECTED_OPERATOR),
            },
            _ => return self.expected(EXPECTED_OPERATOR),
        };
        self.bump()?;
        if let Some((word, what)) = second {
            self.expect(Tok::Word(word.to_string()), what)?;
        }
        Ok(match op {
            Op::Eq => Selector::Eq(key, self.string()?),
            Op::Ne => Selector::Ne(key, self.string()?),
            Op::In => Selector::In(key, self.set()?),
            Op::NotIn => Selector::NotIn(key, self.set()?),
            Op::StartsWith => Selector::StartsWith(key, self.string()?),
            Op::EndsWith => Selector::EndsWith(key, self.string()?),
            Op::Contains => Selector::Contains(key, self.string()?),
        })
    }

    fn string(&mut self) -> PResult<String> {
        match &self.cur.tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.bump()?;
                Ok(s)
            }
            _ => self.expected("a quoted string"),
        }
    }

    /// `{ 'a', "b", }`: possibly empty, trailing comma allowed (as in Calico).
    fn set(&mut self) -> PResult<BTreeSet<String>> {
        self.expect(Tok::LBrace, "'{'")?;
        let mut set = BTreeSet::new();
        loop {
            match &self.cur.tok {
                Tok::RBrace => break,
                Tok::Str(s) => {
                    set.insert(s.clone());
                    self.bump()?;
                }
                _ => return self.expected("a quoted string or '}'"),
            }
            match self.cur.tok {
                Tok::Comma => {
                    self.bump()?;
                }
                Tok::RBrace => break,
                _ => return self.expected("',' or '}'"),
            }
        }
        self.bump()?;
        Ok(set)
    }
}
