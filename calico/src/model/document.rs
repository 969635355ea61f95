//! Parsing of `apply` / `delete` input: one or many Calico v3 documents in YAML (`---`
//! separated) or JSON (one object, a stream of objects, an array, or a `kind: List`).
//!
//! Each document is decoded on its own, so one bad document does not stop the others. Input is
//! read strictly: besides the checks of [`Resource::from_value`], a field the model does not know
//! is an error (with its path), so that a typo is not silently dropped. Empty YAML documents are
//! skipped.

use serde_json::Value;

use super::{DocRef, ModelError, Reason, Resource, decode_in_place, error::Format};

/// Parses every document of `input`, in order. Errors name the document (1-based index, item in
/// a List, starting line for YAML), its kind and name when known, the field and the reason.
pub fn parse_documents(input: &str) -> Vec<Result<Resource, ModelError>> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let trimmed = input.trim_start();
    let values = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        json_values(input)
    } else {
        yaml_values(input)
    };
    let mut out = Vec::new();
    for v in values {
        match v {
            Err(e) => out.push(Err(e)),
            Ok((value, doc)) => expand(value, doc, &mut out),
        }
    }
    out
}

/// Parses a single-resource input (exactly one document).
pub fn parse_one(input: &str) -> Result<Resource, ModelError> {
    let mut all = parse_documents(input);
    match all.len() {
        1 => all.remove(0),
        n => Err(ModelError {
            doc: None,
            kind: None,
            name: None,
            field: String::new(),
            reason: Reason::Invalid(format!("expected one document, found {n}")),
        }),
    }
}

fn syntax_error(doc: DocRef, format: Format, message: String) -> ModelError {
    ModelError {
        doc: Some(Box::new(doc)),
        kind: None,
        name: None,
        field: String::new(),
        reason: Reason::Syntax { format, message },
    }
}

/// JSON: a stream of values; a top-level array counts as one document per element.
fn json_values(input: &str) -> Vec<Result<(Value, DocRef), ModelError>> {
    let mut out = Vec::new();
    let mut index = 0;
    for v in serde_json::Deserializer::from_str(input).into_iter::<Value>() {
        match v {
            Ok(Value::Array(items)) => {
                for item in items {
                    index += 1;
                    out.push(Ok((item, doc_ref(index, None))));
                }
            }
            Ok(v) => {
                index += 1;
                out.push(Ok((v, doc_ref(index, None))));
            }
            Err(e) => {
                // A JSON syntax error cannot be resynchronised: the rest is lost.
                index += 1;
                out.push(Err(syntax_error(
                    doc_ref(index, None),
                    Format::Json,
                    e.to_string(),
                )));
                break;
            }
        }
    }
    out
}

fn doc_ref(index: usize, line: Option<usize>) -> DocRef {
    DocRef {
        index,
        item: None,
        line,
    }
}

/// Whether a line separates YAML documents (`---`, possibly followed by a space and content).
fn is_separator(line: &str) -> bool {
    let line = line.trim_end();
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// YAML: split on `---` lines (so a syntax error stays inside its document), then parse each.
fn yaml_values(input: &str) -> Vec<Result<(Value, DocRef), ModelError>> {
    // (line of the separator, text): text line k is input line `start + k` (1-based); the first
    // chunk starts at a virtual line 0.
    let mut chunks: Vec<(usize, String)> = vec![(0, String::new())];
    for (i, line) in input.lines().enumerate() {
        if is_separator(line) {
            // Content after `--- ` on the same line belongs to the new document.
            let rest = line.trim_end()[3..].trim_start().to_string();
            chunks.push((i + 1, rest));
        } else if line.trim_end() == "..." {
            // Explicit document end: treated like a separator.
            chunks.push((i + 1, String::new()));
        } else if let Some((_, text)) = chunks.last_mut() {
            text.push('\n');
            text.push_str(line);
        }
    }
    let mut out = Vec::new();
    let mut index = 0;
    for (start, text) in chunks {
        let content = |l: &str| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
        };
        let Some(k) = text.lines().position(content) else {
            continue;
        };
        // Pad so that the YAML parser's line numbers are those of the whole input.
        let padded = if start == 0 {
            text.strip_prefix('\n').unwrap_or(&text).to_string()
        } else {
            format!("{}{text}", "\n".repeat(start - 1))
        };
        let doc = doc_ref(index + 1, Some(start + k));
        match serde_yaml_ng::from_str::<Value>(&padded) {
            Ok(Value::Null) => {}
            Ok(v) => {
                index += 1;
                out.push(Ok((v, doc)));
            }
            Err(e) => {
                index += 1;
                out.push(Err(syntax_error(doc, Format::Yaml, e.to_string())));
            }
        }
    }
    out
}

/// Decodes one value, expanding a `kind: List` (or `*List`) into its items.
fn expand(value: Value, doc: DocRef, out: &mut Vec<Result<Resource, ModelError>>) {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"));
    if is_list {
        match value.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let d = DocRef {
                        item: Some(i),
                        ..doc.clone()
                    };
                    out.push(decode_strict(item.clone(), d));
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => out.push(Err(ModelError {
                doc: Some(Box::new(doc)),
                kind: Some("List".into()),
                name: None,
                field: "items".into(),
                reason: Reason::Invalid("items must be a list".into()),
            })),
        }
        return;
    }
    out.push(decode_strict(value, doc));
}

fn decode_strict(mut value: Value, doc: DocRef) -> Result<Resource, ModelError> {
    // Field names are matched as calicoctl's Go decoding matches them (ignoring case), and
    // `value` is left with the canonical names, so the check below compares like with like.
    let r = decode_in_place(&mut value, None, Some(doc.clone()), true)?;
    let mut unknown = Vec::new();
    unknown_fields(&value, &r.to_value(), &mut String::new(), &mut unknown);
    match unknown.into_iter().next() {
        None => Ok(r),
        Some(field) => Err(ModelError {
            doc: Some(Box::new(doc)),
            kind: Some(r.kind().as_str().to_string()),
            name: Some(r.qualified_name()),
            field,
            reason: Reason::UnknownField,
        }),
    }
}

/// Whether a value carries no information (so dropping it loses nothing).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

/// Collects the paths of fields present (and not empty) in `input` but absent from `output`,
/// the re-serialised model: those are the fields the model did not understand. An object that
/// serialised to nothing is descended into, so that a known field holding only unknown ones
/// (`destination: {port: 80}`) reports `destination.port`; the price is that an unknown field
/// holding an object (`lables: {a: b}`) is reported at its first leaf (`lables.a`).
fn unknown_fields(input: &Value, output: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, iv) in i {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match o.get(k) {
                    Some(ov) => unknown_fields(iv, ov, path, out),
                    // A known object that serialised to nothing (all its fields unknown): point
                    // at the fields inside it.
                    None if iv.is_object() && !is_empty(iv) => {
                        unknown_fields(iv, &Value::Object(Default::default()), path, out)
                    }
                    None if !is_empty(iv) => out.push(path.clone()),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                unknown_fields(iv, ov, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
