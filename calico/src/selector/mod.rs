//! Calico's label selector language: parse, print and evaluate.
//!
//! The grammar follows libcalico-go's tokenizer and parser (Calico v3):
//!
//! ```text
//! selector   := <empty> | or_expr
//! or_expr    := and_expr ( "||" and_expr )*
//! and_expr   := unary ( "&&" unary )*
//! unary      := "!" unary | primary
//! primary    := "(" or_expr ")"
//!             | "has(" LABEL ")" | "all(" ")" | "global(" ")"
//!             | LABEL "==" STRING | LABEL "!=" STRING
//!             | LABEL "in" SET | LABEL "not" "in" SET
//!             | LABEL "starts" "with" STRING | LABEL "ends" "with" STRING
//!             | LABEL "contains" STRING
//! SET        := "{" ( STRING ( "," STRING )* ","? )? "}"
//! LABEL      := [A-Za-z0-9_./-]+
//! STRING     := '...' | "..."          (no escapes; a string cannot hold its own quote)
//! ```
//!
//! Decisions, all as in Calico:
//! - Precedence is `!` > `&&` > `||`; `&&` and `||` are n-ary and flat (`a && b && c` is one node).
//! - The empty (or blank) selector is `all()`.
//! - Whitespace is spaces and tabs only; a newline is an error (Calico rejects it too).
//! - A function name must touch its `(`: `has(a)`, not `has (a)`. Spaces inside are fine.
//! - `in {}` is allowed and never matches; `not in {}` always matches. A trailing comma in a set
//!   (`{'a',}`) is accepted. Sets are stored sorted and deduplicated.
//! - Missing labels: `!=` and `not in` match when the label is absent; `==`, `in`, `starts with`,
//!   `ends with`, `contains` and `has()` need it present.
//! - The operator spellings `startswith`, `endswith` and `notin` (no space) are accepted, because
//!   Calico's tokenizer accepts them.
//! - `global()` matches when the evaluated object is non-namespaced (the `global` flag).
//!
//! One deliberate difference: Calico folds `!!x` into `x` while parsing; here it stays as two
//! negations (same meaning), so that printing and re-parsing give back an equal tree. The printed
//! form is otherwise Calico's canonical one: `&&`/`||` groups in parentheses, values in double
//! quotes (single quotes when the value holds a `"`), sets sorted.

mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

/// Most `!` and `(` a selector may nest, so that a hostile selector cannot overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// A parsed selector expression (the AST).
///
/// Trees from [`Selector::parse`] have `And`/`Or` with at least two operands, label keys made of
/// `[A-Za-z0-9_./-]`, and values that do not hold both quote characters; such trees print (with
/// `Display`) to text that parses back to an equal tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Selector {
    /// `all()`, or the empty selector: matches everything.
    #[default]
    All,
    /// `global()`: matches non-namespaced objects.
    Global,
    /// `has(key)`: the label is present.
    Has(String),
    /// `key == 'value'`: present and equal.
    Eq(String, String),
    /// `key != 'value'`: absent, or present with another value.
    Ne(String, String),
    /// `key in {...}`: present and one of the values.
    In(String, BTreeSet<String>),
    /// `key not in {...}`: absent, or present with none of the values.
    NotIn(String, BTreeSet<String>),
    /// `key starts with 'prefix'`: present and starts with it.
    StartsWith(String, String),
    /// `key ends with 'suffix'`: present and ends with it.
    EndsWith(String, String),
    /// `key contains 'part'`: present and holds it as a substring.
    Contains(String, String),
    /// `!expr`.
    Not(Box<Selector>),
    /// `a && b && ...`: all operands match (an empty list matches).
    And(Vec<Selector>),
    /// `a || b || ...`: some operand matches (an empty list does not).
    Or(Vec<Selector>),
}

/// A set of labels a selector can be evaluated against.
pub trait Labels {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// Why a selector did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// Something else was found where `expected` was required.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the grammar required here.
        expected: &'static str,
        /// What was there instead.
        found: String,
    },
    /// A quote with no closing quote.
    #[error("unterminated string")]
    UnterminatedString,
    /// `name(` where `name` is not `has`, `all` or `global`.
    #[error("unknown function '{0}' (expected has, all or global)")]
    UnknownFunction(String),
    /// `has (a)`: a space between a function name and its `(`.
    #[error("no space allowed between '{0}' and '('")]
    SpaceBeforeParen(String),
    /// A character that starts no token.
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    /// More than [`MAX_DEPTH`] nested `!` and `(`.
    #[error("selector nests deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// A parse error: what went wrong, at which byte offset of which input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at {pos} in {input:?}")]
pub struct SelectorError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Byte offset into `input`.
    pub pos: usize,
    /// The selector text.
    pub input: String,
}

impl Selector {
    /// Parses Calico selector text; the empty string is `all()`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        parser::parse(input)
    }

    /// Whether an object with `labels` matches; `global` says the object is non-namespaced
    /// (what `global()` tests).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L, global: bool) -> bool {
        let value_is = |key: &str, pred: &dyn Fn(&str) -> bool| labels.label(key).is_some_and(pred);
        match self {
            Selector::All => true,
            Selector::Global => global,
            Selector::Has(k) => labels.label(k).is_some(),
            Selector::Eq(k, v) => value_is(k, &|x| x == v),
            Selector::Ne(k, v) => labels.label(k) != Some(v.as_str()),
            Selector::In(k, set) => value_is(k, &|x| set.contains(x)),
            Selector::NotIn(k, set) => !value_is(k, &|x| set.contains(x)),
            Selector::StartsWith(k, v) => value_is(k, &|x| x.starts_with(v.as_str())),
            Selector::EndsWith(k, v) => value_is(k, &|x| x.ends_with(v.as_str())),
            Selector::Contains(k, v) => value_is(k, &|x| x.contains(v.as_str())),
            Selector::Not(inner) => !inner.matches(labels, global),
            Selector::And(ops) => ops.iter().all(|s| s.matches(labels, global)),
            Selector::Or(ops) => ops.iter().any(|s| s.matches(labels, global)),
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// Writes `v` quoted: `"v"`, or `'v'` when `v` holds a double quote (as Calico prints).
fn write_quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    let q = if v.contains('"') { '\'' } else { '"' };
    write!(f, "{q}{v}{q}")
}

fn write_set(f: &mut fmt::Formatter<'_>, set: &BTreeSet<String>) -> fmt::Result {
    f.write_str("{")?;
    for (i, v) in set.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_quoted(f, v)?;
    }
    f.write_str("}")
}

fn write_group(f: &mut fmt::Formatter<'_>, ops: &[Selector], sep: &str) -> fmt::Result {
    f.write_str("(")?;
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{op}")?;
    }
    f.write_str(")")
}

/// Calico's canonical form (see the module docs).
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |f: &mut fmt::Formatter<'_>, k: &str, op: &str, v: &str| {
            write!(f, "{k} {op} ")?;
            write_quoted(f, v)
        };
        match self {
            Selector::All => f.write_str("all()"),
            Selector::Global => f.write_str("global()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => op(f, k, "==", v),
            Selector::Ne(k, v) => op(f, k, "!=", v),
            Selector::StartsWith(k, v) => op(f, k, "starts with", v),
            Selector::EndsWith(k, v) => op(f, k, "ends with", v),
            Selector::Contains(k, v) => op(f, k, "contains", v),
            Selector::In(k, set) => {
                write!(f, "{k} in ")?;
                write_set(f, set)
            }
            Selector::NotIn(k, set) => {
                write!(f, "{k} not in ")?;
                write_set(f, set)
            }
            Selector::Not(inner) => write!(f, "!{inner}"),
            // Degenerate groups (not produced by the parser) print as something equivalent.
            Selector::And(ops) if ops.is_empty() => f.write_str("all()"),
            Selector::Or(ops) if ops.is_empty() => f.write_str("!all()"),
            Selector::And(ops) => write_group(f, ops, " && "),
            Selector::Or(ops) => write_group(f, ops, " || "),
        }
    }
}
