//! Errors that name the document, the field and the reason.

use std::fmt;

/// The syntax of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

/// Why a document or a field was rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Reason {
    /// The text is not YAML / JSON at all.
    #[error("not valid {format}: {message}")]
    Syntax { format: Format, message: String },
    /// The document is not a mapping / object.
    #[error("a resource must be an object with apiVersion, kind, metadata and spec")]
    NotAnObject,
    /// `apiVersion` is not `projectcalico.org/v3`.
    #[error("apiVersion {0:?} is not projectcalico.org/v3")]
    BadApiVersion(String),
    /// `kind` is missing.
    #[error("kind is missing")]
    MissingKind,
    /// `kind` is not one felix knows.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// A value has the wrong type or is not acceptable (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// A field this model does not know (only reported for `apply` input, see [`super::document`]).
    #[error("unknown field")]
    UnknownField,
    /// `metadata.name` is missing or empty.
    #[error("name is missing")]
    MissingName,
    /// `metadata.name` (or another name) cannot be used in an etcd key.
    #[error(
        "{0:?} is not a valid name (1-253 characters, no '/', whitespace or control characters)"
    )]
    BadName(String),
    /// A namespace was given on a cluster-wide kind.
    #[error("{kind} is not namespaced, but namespace {namespace:?} was given")]
    NamespaceOnGlobal {
        kind: super::Kind,
        namespace: String,
    },
    /// `ports` / `notPorts` without a `protocol` that has ports.
    #[error("ports need protocol TCP, UDP or SCTP (got {0})")]
    PortsNeedProtocol(String),
    /// `icmp` / `notICMP` without protocol ICMP / ICMPv6.
    #[error("ICMP matches need protocol ICMP or ICMPv6 (got {0})")]
    IcmpNeedsProtocol(String),
    /// A numeric field out of its range.
    #[error("{value} is out of range {min}-{max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    /// A field required in this context is empty.
    #[error("must be set: {0}")]
    Required(&'static str),
    /// Two fields that cannot be used together (the message says why).
    #[error("{0}")]
    Conflict(String),
    /// A Calico feature felix does not enforce; accepting it would silently widen a rule.
    #[error("{0} is not supported by this felix")]
    Unsupported(&'static str),
    /// A selector that does not parse.
    #[error("bad selector: {0}")]
    BadSelector(Box<crate::selector::SelectorError>),
}

/// An error at a field, before it is tied to a document.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.ingress[1].destination.ports[0]` (empty: the whole document).
    pub field: String,
    pub reason: Reason,
}

impl FieldError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, reason: Reason) -> Self {
        FieldError {
            field: field.into(),
            reason,
        }
    }
}

/// Which document of an input an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRef {
    /// 1-based position of the document in the input (YAML `---` sections, JSON values or
    /// elements of a top-level JSON array).
    pub index: usize,
    /// 0-based position inside a `kind: List` document's `items`.
    pub item: Option<usize>,
    /// 1-based line where the document starts (YAML input).
    pub line: Option<usize>,
}

impl fmt::Display for DocRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.index)?;
        if let Some(i) = self.item {
            write!(f, " items[{i}]")?;
        }
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        Ok(())
    }
}

/// A rejected resource: which document, which resource (kind, namespace/name) when known, which
/// field, and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", describe(.doc, .kind, .name, .field, .reason))]
pub struct ModelError {
    /// Boxed to keep the error small.
    pub doc: Option<Box<DocRef>>,
    /// `kind` of the document, when it had one.
    pub kind: Option<String>,
    /// `namespace/name` or `name`, when the document had one.
    pub name: Option<String>,
    /// Path of the field (empty: the whole document).
    pub field: String,
    pub reason: Reason,
}

fn describe(
    doc: &Option<Box<DocRef>>,
    kind: &Option<String>,
    name: &Option<String>,
    field: &str,
    reason: &Reason,
) -> String {
    let mut parts = Vec::new();
    if let Some(d) = doc {
        parts.push(d.to_string());
    }
    match (kind, name) {
        (Some(k), Some(n)) => parts.push(format!("{k} {n:?}")),
        (Some(k), None) => parts.push(k.clone()),
        (None, Some(n)) => parts.push(format!("{n:?}")),
        (None, None) => {}
    }
    let mut s = parts.join(" ");
    if !field.is_empty() {
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(field);
    }
    if !s.is_empty() {
        s.push_str(": ");
    }
    s.push_str(&reason.to_string());
    s
}
