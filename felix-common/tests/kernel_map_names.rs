//! The kernel crate retypes each map name as a literal (`#[btf_map(name = "...")]` takes no
//! constant); every such literal must be one of [`felix_common::maps::PINNED`], and every pinned
//! name must be declared by the kernel crate, so that user space and the kernel never disagree.

use std::{collections::BTreeSet, fs, path::Path};

use felix_common::maps::PINNED;

/// Every `name = "..."` of a map attribute in `felix-ebpf/src`.
fn kernel_map_names() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../felix-ebpf/src");
    let mut names = BTreeSet::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read felix-ebpf/src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = fs::read_to_string(&path).expect("read a kernel source");
            for line in text.lines().map(str::trim) {
                let is_map_attribute = line.starts_with("#[btf_map(") || line.starts_with("#[map(");
                if let Some(rest) = line.split_once("name = \"").filter(|_| is_map_attribute) {
                    let name = rest.1.split('"').next().unwrap_or_default();
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn every_kernel_map_name_is_a_felix_common_constant() {
    let kernel = kernel_map_names();
    let common: BTreeSet<String> = PINNED.iter().map(|n| n.to_string()).collect();
    assert!(
        kernel.len() >= 10,
        "found only {kernel:?} in felix-ebpf/src: the scan no longer sees the map attributes"
    );
    let unknown: Vec<_> = kernel.difference(&common).collect();
    assert!(
        unknown.is_empty(),
        "kernel maps not named in felix_common::maps::PINNED: {unknown:?}"
    );
    let undeclared: Vec<_> = common.difference(&kernel).collect();
    assert!(
        undeclared.is_empty(),
        "felix_common::maps::PINNED names no kernel map declares: {undeclared:?}"
    );
}
