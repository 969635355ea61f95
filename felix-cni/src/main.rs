//! `felix-cni`: the CNI plugin binary. The runtime sets `CNI_COMMAND` (ADD, DEL, CHECK,
//! VERSION) and the other `CNI_*` variables and writes the network configuration on stdin; the
//! result, or a CNI error JSON, goes to stdout, and the exit status says which. See the
//! library ([`felix_cni`]) and felix-cni/README.md.

use std::{
    io::{Read, Write},
    process::ExitCode,
};

use felix_cni::error::{CniError, Code};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let response = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => felix_cni::run(|k| std::env::var(k).ok(), &stdin),
        Err(e) => felix_cni::Response {
            stdout: CniError::new(Code::Io, "reading the network configuration from stdin")
                .details(e)
                .to_json(felix_cni::version::CURRENT)
                .to_string(),
            success: false,
        },
    };
    if !response.success {
        let command = std::env::var("CNI_COMMAND").unwrap_or_default();
        eprintln!("felix-cni {command}: {}", response.stdout);
    }
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{}", response.stdout).and_then(|()| out.flush());
    if response.success && written.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
