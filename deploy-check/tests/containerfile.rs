//! deploy/Containerfile: not built in CI (no container runtime there), so these checks keep it in
//! step with what the build really needs (`cargo xtask setup`, felix-user/build.rs, the
//! workspace) and with what the manifests run.

mod common;

use std::collections::BTreeSet;

use common::{Deployment, read, script, workspace_members};
use deploy_check::containerfile::{Instruction, instructions};
use xtask::setup::{APT_PACKAGES, BPF_LINKER_VERSION};

fn containerfile() -> Vec<Instruction> {
    instructions(&read("deploy/Containerfile"))
}

/// The instructions of each stage (`FROM` first), in order.
fn stages(all: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| &all[start..starts.get(k + 1).copied().unwrap_or(all.len())])
        .collect()
}

/// The packages of every `apt-get install` in `stage`.
fn apt_installs(stage: &[Instruction]) -> BTreeSet<String> {
    let mut packages = BTreeSet::new();
    for run in stage.iter().filter(|i| i.keyword == "RUN") {
        for command in run.args.split("&&") {
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Some(at) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                packages.extend(
                    words[at + 2..]
                        .iter()
                        .filter(|w| !w.starts_with('-'))
                        .map(|w| (*w).to_owned()),
                );
            }
        }
    }
    packages
}

fn arg_default(all: &[Instruction], name: &str) -> String {
    all.iter()
        .filter(|i| i.keyword == "ARG")
        .find_map(|i| i.args.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no ARG {name}=..."))
        .to_owned()
}

#[test]
fn two_stages_on_debian_12() {
    let all = containerfile();
    let stages = stages(&all);
    assert_eq!(stages.len(), 2, "build and runtime");
    assert_eq!(arg_default(&all, "DEBIAN_RELEASE"), "bookworm");
    assert_eq!(
        stages[0][0].args,
        "docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build"
    );
    assert_eq!(
        stages[1][0].args,
        "docker.io/library/debian:${DEBIAN_RELEASE}-slim"
    );
    // The workspace's rust-version is the toolchain of the build stage.
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("workspace rust-version")
        .trim_matches('"');
    assert_eq!(arg_default(&all, "RUST_VERSION"), rust_version);
}

#[test]
fn build_stage_installs_what_setup_installs() {
    let all = containerfile();
    let build = stages(&all)[0];
    let installed = apt_installs(build);
    for package in &installed {
        assert!(
            APT_PACKAGES.contains(&package.as_str()),
            "{package} is not in xtask's APT_PACKAGES"
        );
    }
    let llvm = APT_PACKAGES
        .iter()
        .find(|p| p.starts_with("llvm-") && p.ends_with("-dev"))
        .expect("setup installs an llvm-N-dev");
    let llvm_version = &llvm["llvm-".len()..llvm.len() - "-dev".len()];
    for needed in [
        "rustc-web",
        "cargo-web",
        "libstd-rust-web-dev-bpf",
        llvm,
        "protobuf-compiler",
        "libprotobuf-dev",
    ] {
        assert!(installed.contains(needed), "the build stage needs {needed}");
    }

    // bpf-linker as setup builds it, where felix-user/build.rs looks for it.
    let linker = build
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("bpf-linker@"))
        .expect("a RUN that installs bpf-linker");
    let words: Vec<&str> = linker.words().collect();
    assert!(words.contains(&format!("bpf-linker@{BPF_LINKER_VERSION}").as_str()));
    assert!(words.contains(&"/usr/bin/cargo"), "Debian's cargo");
    assert!(words.contains(&"--locked"));
    assert!(words.contains(&format!("LLVM_PREFIX=/usr/lib/llvm-{llvm_version}").as_str()));
    assert!(words.contains(&format!("llvm-{llvm_version}").as_str()));
    let workdir = build
        .iter()
        .find(|i| i.keyword == "WORKDIR")
        .expect("WORKDIR");
    assert!(
        linker
            .args
            .contains(&format!("--root {}/.tools", workdir.args)),
        "bpf-linker goes to <workspace>/.tools/bin"
    );
    assert!(read("felix-user/build.rs").contains(".tools/bin"));
}

#[test]
fn every_workspace_member_is_copied_and_the_binaries_built() {
    let all = containerfile();
    let build = stages(&all)[0];
    let copied: BTreeSet<&str> = build
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| {
            let words: Vec<&str> = i.words().filter(|w| !w.starts_with("--")).collect();
            let sources = words.len().saturating_sub(1);
            words.into_iter().take(sources)
        })
        .collect();
    let mut needed = workspace_members();
    needed.extend(["felix-ebpf", "Cargo.toml", "Cargo.lock"].map(String::from));
    for path in &needed {
        assert!(
            copied.contains(path.as_str()),
            "the build stage does not COPY {path}"
        );
    }

    let cargo = build
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a RUN with cargo build");
    let words: Vec<&str> = cargo.words().collect();
    for flag in ["--release", "--locked"] {
        assert!(words.contains(&flag), "cargo build {flag}");
    }
    let packages: BTreeSet<&str> = words
        .windows(2)
        .filter(|w| w[0] == "-p")
        .map(|w| w[1])
        .collect();
    assert_eq!(
        packages,
        BTreeSet::from(["felix-user", "felix-cni", "bird-conf"])
    );
    for out in [
        "target/release/felix /out/usr/local/bin/felix",
        "target/release/bird-conf /out/usr/local/bin/bird-conf",
        "target/release/felix-cni /out/opt/cni/bin/felix-cni",
    ] {
        assert!(cargo.args.contains(out), "installs {out}");
    }
    assert!(
        read("felix-user/Cargo.toml").contains("name = \"felix\""),
        "felix-user's binary is felix"
    );
}

#[test]
fn the_image_holds_what_the_pod_runs() {
    let all = containerfile();
    let runtime = stages(&all)[1];
    let installed = apt_installs(runtime);
    for needed in ["iproute2", "bird2"] {
        assert!(installed.contains(needed), "the image needs {needed}");
    }
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "COPY" && i.args == "--from=build /out/ /"),
        "the binaries come from the build stage"
    );
    let d = Deployment::load();
    // felix is on PATH (/usr/local/bin); felix-cni is where install-cni copies it from; the
    // init scripts use only what Debian's base system has.
    assert_eq!(
        d.container("felix").command.as_deref().unwrap_or_default()[0],
        "felix"
    );
    assert!(script(d.init_container("install-cni")).contains("src=/opt/cni/bin/felix-cni\n"));
    let cmd = runtime.iter().find(|i| i.keyword == "CMD").expect("a CMD");
    assert_eq!(cmd.args, r#"["felix", "run"]"#);
}

#[test]
fn build_outputs_stay_out_of_the_context() {
    let ignore = read("deploy/Containerfile.dockerignore");
    let entries: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for entry in ["target", ".tools", ".git"] {
        assert!(entries.contains(entry), "{entry} is not ignored");
    }
}
