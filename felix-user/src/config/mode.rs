//! Which dataplane felix programs (the `dataplane` setting).

/// Which dataplane felix programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// felix's eBPF programs (the default).
    Bpf,
    /// Calico-style iptables chains with this backend; the kernel routes.
    Iptables(crate::iptables::Backend),
}

impl Mode {
    /// `bpf`, `iptables-nft` or `iptables-legacy` (as reported in the status and metrics).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bpf => "bpf",
            Mode::Iptables(crate::iptables::Backend::Nft) => "iptables-nft",
            Mode::Iptables(crate::iptables::Backend::Legacy) => "iptables-legacy",
        }
    }
}
