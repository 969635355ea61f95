//! No crate of the workspace has modules that import each other, directly or through others
//! (felix-user's layers are checked further by `felix-user/tests/layers.rs`).

use std::path::Path;

use testkit::imports::{cycles, import_graph, modules};

/// Each crate's sources, and the module depth its cycles are checked at.
const CRATES: [(&str, usize); 10] = [
    ("calico/src", 1),
    ("felix-rows/src", 1),
    ("felix-user/src", 2),
    ("felix-cni/src", 1),
    ("bird-conf/src", 1),
    ("testkit/src", 1),
    ("lab/src", 1),
    ("xtask/src", 1),
    ("bench/src", 1),
    ("deploy-check/src", 1),
];

#[test]
fn no_crate_has_an_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for (src, depth) in CRATES {
        let src_dir = root.join(src);
        let modules = modules(&src_dir).expect("list the crate's modules");
        assert!(modules.len() > 1, "{src}: no modules found");
        let graph = import_graph(&src_dir, depth).expect("read the crate's sources");
        found.extend(cycles(&graph).into_iter().map(|c| format!("{src}: {c}")));
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}
