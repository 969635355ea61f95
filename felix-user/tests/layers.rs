//! The layering of `felix-user/src`: each layer imports only the layers below it, and no two
//! modules import each other, directly or through others (read from the sources by
//! [`testkit::imports`]).

use std::path::Path;

use testkit::imports::{self, Graph};

/// felix-user's layers, lowest first: a layer may import the ones before it.
const LAYERS: [&str; 7] = [
    "calc",
    "dataplane",
    "host",
    "report",
    "iptables",
    "config",
    "agent",
];

/// felix-user's import graph at the granularity of `layer::module`.
fn import_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    imports::import_graph(&src, 2).expect("read felix-user's sources")
}

fn layer_rank(module: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.first().is_some_and(|m| m == l))
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let mut violations = Vec::new();
    for (from, targets) in import_graph() {
        let Some(rank) = layer_rank(&from) else {
            continue;
        };
        for to in targets {
            if layer_rank(&to).is_some_and(|r| r > rank) {
                violations.push(format!("{} imports {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layers are, lowest first, {LAYERS:?}; these imports go upwards:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_module_imports_itself_through_others() {
    let cycles = imports::cycles(&import_graph());
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn every_module_belongs_to_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = imports::modules(&src).expect("list felix-user's modules");
    let outside: Vec<String> = modules
        .keys()
        .filter(|module| !module.is_empty() && layer_rank(module).is_none())
        .map(|module| module.join("::"))
        .collect();
    assert!(
        outside.is_empty(),
        "modules in no layer of {LAYERS:?}: {outside:?}"
    );
}
