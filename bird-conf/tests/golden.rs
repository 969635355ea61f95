//! Golden files: each `tests/golden/<case>.yaml` cluster rendered for some of its nodes must
//! equal `tests/golden/<case>.<node>.conf` byte for byte, and BIRD must accept it (`bird -p -c`).
//!
//! After a deliberate change: `UPDATE_GOLDEN=1 cargo test -p bird-conf --test golden`, then
//! review the diff of the .conf files.

use std::path::{Path, PathBuf};

use bird_conf::{fixture::Fixture, inputs::Inputs, render::Templates, view::BirdView};

/// (case, nodes to render for).
const CASES: [(&str, &[&str]); 8] = [
    ("mesh-3-nodes", &["h1", "h3"]),
    ("route-reflector", &["rr1", "h1"]),
    ("explicit-peers", &["h1", "h2"]),
    ("blocks", &["h1"]),
    ("ipip-always", &["h1"]),
    ("ipip-crosssubnet", &["h1"]),
    ("ipip-never", &["h1"]),
    ("disabled-pool", &["h1"]),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The configuration of `node` in the cluster of `case`.
fn render(case: &str, node: &str) -> String {
    let path = golden_dir().join(format!("{case}.yaml"));
    let text = std::fs::read_to_string(&path).expect("read fixture");
    let fixture = Fixture::parse(&text).expect("parse fixture");
    let store = fixture.store().expect("load fixture");
    let inputs = Inputs::from_store(&store, node);
    let view = BirdView::build(&inputs).expect("view");
    Templates::built_in()
        .expect("templates")
        .render(&view)
        .expect("render")
}

/// `bird -p -c` on `text`; BIRD's message on failure.
fn bird_check(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bird.conf");
    std::fs::write(&path, text).expect("write");
    let out = std::process::Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run bird ({e}): install BIRD 2 (`cargo xtask setup` does)")
        });
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn rendered_configs_match_the_golden_files_and_parse() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (case, nodes) in CASES {
        for node in nodes {
            let text = render(case, node);
            let golden = golden_dir().join(format!("{case}.{node}.conf"));
            if update {
                std::fs::write(&golden, &text).expect("write golden");
            }
            match std::fs::read_to_string(&golden) {
                Ok(expected) if expected == text => {}
                Ok(_) => failures.push(format!(
                    "{}: differs from the rendered config (UPDATE_GOLDEN=1 rewrites it)",
                    golden.display()
                )),
                Err(e) => failures.push(format!("{}: {e}", golden.display())),
            }
            if let Err(message) = bird_check(&text) {
                failures.push(format!("{case} for {node}: bird -p rejects it: {message}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_has_a_case() {
    let mut fixtures: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect();
    fixtures.sort();
    let mut cases: Vec<String> = CASES.iter().map(|(c, _)| c.to_string()).collect();
    cases.sort();
    assert_eq!(fixtures, cases);
}
