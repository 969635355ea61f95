//! Builds the eBPF object (`felix-ebpf`) with Debian's rustc and bpf-linker and hands it to the
//! `felix` binary, which embeds it. See docs/toolchain.md.
//!
//! `FELIX_EBPF_STUB=1` embeds an empty object instead, so `cargo check` and clippy work on a
//! machine without the eBPF toolchain; such a `felix` refuses to load programs.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// Debian's cargo and rustc, which ship a prebuilt `core` for bpfel-unknown-none.
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("felix-user lives in the workspace root")
        .to_path_buf();
    let ebpf_dir = root.join("felix-ebpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("felix.bpf.o");

    println!("cargo::rerun-if-env-changed=FELIX_EBPF_STUB");
    for path in [
        ebpf_dir.join("src"),
        ebpf_dir.join("Cargo.toml"),
        ebpf_dir.join("Cargo.lock"),
        ebpf_dir.join(".cargo/config.toml"),
        root.join("felix-common/src"),
        root.join("felix-common/Cargo.toml"),
    ] {
        println!("cargo::rerun-if-changed={}", path.display());
    }

    if env::var_os("FELIX_EBPF_STUB").is_some_and(|v| v != "0") {
        println!("cargo::warning=FELIX_EBPF_STUB is set: embedding an empty eBPF object");
        fs::write(&object, b"").expect("write the stub object");
        return;
    }

    let tools_bin = root.join(".tools/bin");
    require(
        Path::new(DEBIAN_CARGO),
        "Debian's cargo (package cargo-web)",
    );
    require(
        Path::new(DEBIAN_RUSTC),
        "Debian's rustc (package rustc-web)",
    );
    require(&tools_bin.join("bpf-linker"), "bpf-linker");

    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools_bin];
    paths.extend(env::split_paths(&path));
    let target_dir = root.join("target/ebpf");

    let mut build = Command::new(DEBIAN_CARGO);
    build
        .args(["build", "--release", "--locked"])
        .current_dir(&ebpf_dir);
    // The child must not inherit this (host) build's settings.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTUP")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            build.env_remove(key.as_ref());
        }
    }
    build
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(
            "PATH",
            env::join_paths(paths).expect("PATH entries contain no separator"),
        );
    let status = build.status().expect("run Debian's cargo for felix-ebpf");
    assert!(
        status.success(),
        "building felix-ebpf failed ({status}); see the errors above"
    );

    let built = target_dir.join("bpfel-unknown-none/release/felix");
    fs::copy(&built, &object)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), object.display()));
}

/// Stops the build with a message that says how to get a missing tool.
fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} not found at {}: run `cargo xtask setup` (or set FELIX_EBPF_STUB=1 to check the code without it)",
        path.display()
    );
}
