//! The settings table of `docs/configuration.md` and `felix run --help` against the one settings
//! table in the code (`felix_user::config::table::SETTINGS`), so that neither can drift.
//!
//! `UPDATE_DOCS=1 cargo test -p felix-user --test settings_doc` rewrites the doc's table.

use std::{path::PathBuf, process::Command};

use felix_user::config::{docs::markdown_table, table::SETTINGS};

const BEGIN: &str = "<!-- settings-table:begin (generated: UPDATE_DOCS=1 cargo test -p felix-user --test settings_doc) -->\n";
const END: &str = "<!-- settings-table:end -->";

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md")
}

#[test]
fn the_docs_settings_table_is_the_codes() {
    let path = doc_path();
    let doc =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let start = doc
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{} has no line {BEGIN:?}", path.display()))
        + BEGIN.len();
    let len = doc[start..]
        .find(END)
        .unwrap_or_else(|| panic!("{} has no {END:?} after the begin marker", path.display()));
    let expected = markdown_table();
    if doc[start..start + len] == expected {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{expected}{}", &doc[..start], &doc[start + len..]);
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let differing: Vec<String> = doc[start..start + len]
        .lines()
        .zip(expected.lines())
        .filter(|(doc, code)| doc != code)
        .map(|(doc, code)| format!("  doc:  {doc}\n  code: {code}"))
        .collect();
    panic!(
        "the settings table in {} differs from felix_user::config::table::SETTINGS \
         ({} lines in the doc, {} from the code); first differences:\n{}\n\
         regenerate it with: UPDATE_DOCS=1 cargo test -p felix-user --test settings_doc",
        path.display(),
        doc[start..start + len].lines().count(),
        expected.lines().count(),
        differing.into_iter().take(3).collect::<Vec<_>>().join("\n"),
    );
}

#[test]
fn run_help_names_every_settings_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_felix"))
        .args(["run", "--help"])
        .output()
        .expect("run felix run --help");
    assert!(
        output.status.success(),
        "felix run --help failed: {output:?}"
    );
    let help = String::from_utf8_lossy(&output.stdout);
    let missing: Vec<String> = SETTINGS
        .iter()
        .filter(|s| !s.flag.is_empty())
        .map(|s| format!("--{}", s.flag))
        .filter(|flag| {
            !help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
                .any(|word| word == flag || word.starts_with(&format!("{flag}=")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "`felix run --help` lacks the flags {missing:?} of the settings table \
         (felix-user/src/config/table.rs); help:\n{help}"
    );
}
