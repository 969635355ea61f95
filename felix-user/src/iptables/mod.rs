//! iptables mode (`felix run --dataplane iptables`): the policy the calculation produces
//! ([`crate::calc::policy::calc`]) rendered the way Calico's iptables mode renders it, for the
//! comparison benchmarks. Pod routing in this mode is the kernel's; this module only filters.
//!
//! # Layout (filter table; every name starts with `felix-`, at most 28 characters)
//!
//! ```text
//! INPUT   1: -j felix-INPUT      FORWARD 1: -j felix-FORWARD      [OUTPUT 1: -j felix-OUTPUT]
//!
//! felix-FORWARD   clear accept|pass marks
//!                 -i cali+ -j felix-from-wl-dispatch     (egress policy of the sender)
//!                 -o cali+ -j felix-to-wl-dispatch       (ingress policy of the receiver)
//!                 mark accept -> ACCEPT                  (anything else goes on in FORWARD)
//! felix-INPUT     -i cali+ -g felix-wl-to-host: -j felix-from-wl-dispatch, then ACCEPT
//! felix-OUTPUT    (Config::police_host_to_workload) -o cali+ -j felix-to-wl-dispatch,
//!                 mark accept -> ACCEPT
//! felix-from-wl-dispatch   -i caliX -g felix-fw-caliX ... ; unknown interface -> DROP
//! felix-to-wl-dispatch     -o caliX -g felix-tw-caliX ... ; unknown interface -> DROP
//! felix-fw-caliX / felix-tw-caliX (one pair per endpoint)
//!                 ctstate RELATED,ESTABLISHED -> ACCEPT; ctstate INVALID -> DROP
//!                 clear marks; -j felix-pX-<group>; mark accept -> RETURN; DROP (default deny)
//! felix-pi-<h> / felix-po-<h>   one per group (GroupKey: endpoints with the same policies,
//!                 profiles and local mask share it), per tier or profile in order:
//!                 -j felix-pX-<h>-<n>  (that tier's or profile's rules)
//!                 mark accept -> RETURN
//!                 end of tier: mark pass clear -> DROP (unless defaultAction Pass); clear pass
//! felix-pX-<h>-<n>  one rule per calculated entry (or a few, see below):
//!                 Allow -> -g felix-allow (sets the accept mark, returns to the group chain)
//!                 Deny  -> DROP
//!                 Pass  -> -g felix-pass  (sets the pass mark, returns to the group chain)
//! ```
//!
//! # How Calico's semantics map
//!
//! - First Allow/Deny decides: Deny drops at once; Allow sets mark 0x10000 and every chain
//!   above returns on it, up to `felix-FORWARD`, which accepts. Between two local pods the
//!   sender's egress chain returns with the mark, the receiver's ingress chain clears it and
//!   decides again, as Calico's `cali-FORWARD` does.
//! - Pass skips the rest of its tier: it sets mark 0x20000 and leaves the tier's chain; the end
//!   of the tier drops only when that mark is clear (a tier whose `defaultAction` is Pass has no
//!   drop), then clears it. In a profile, Pass goes on to the next profile. Nothing decided after
//!   the last tier or profile: the endpoint chain's final DROP (default deny).
//! - Log rules, rules that cannot match this endpoint (local side, IPv6, named ports nobody
//!   declares) are not in the program, so not rendered. A named port arrives already resolved:
//!   the endpoint's own port numbers on the local side; on the remote side one program entry
//!   per port number whose address set holds the endpoints declaring it, rendered like any
//!   entry (address set + `--dports`), which is Calico's `hash:ip,port` set split by port. Rules that cannot match any packet (an empty selector, a
//!   `notNets` of 0.0.0.0/0, `protocol` equal to `notProtocol`) are left out.
//! - The remote address (source for ingress, destination for egress): a set of at most
//!   [`Config::inline_max`] networks is written inline, one rule per network (only one set per
//!   rule can be, since `-s`/`-d` appear once); a single-network `notNets`-like set inline with
//!   `!`; every other set is an ipset `hash:net` matched with `-m set [!] --match-set`.
//!   Sets are aggregated first (contained networks dropped, adjacent ones merged); a set
//!   holding 0.0.0.0/0 is "any" (hash:net cannot hold /0).
//! - Ports: `-m multiport [!] --dports/--sports`, ranges `lo:hi`, at most 15 ports a match (a
//!   range counts twice): more positive ports become several rules, more negative ones several
//!   matches in the same rule. ICMP type/code: `-m icmp [!] --icmp-type t[/c]` (a rule with a
//!   type and no code matches the type). `notProtocol`: `! -p`.
//!
//! # Applying
//!
//! ipsets are named by a hash of their members (`felix-<16 hex>`), so a name always means the
//! same members: a changed selector gives a new set, created (filled as `felix-tmp`, then
//! renamed, so it exists only complete) before the one `iptables-restore --noflush`
//! transaction that switches the rules to it, and the old set is destroyed after it. Chains
//! are declared (flushed) and rewritten in that transaction; stale chains of ours are flushed
//! and deleted in it; each hook jump is kept as the first rule of its built-in chain. Only
//! chains whose rules differ from the last successful apply (or that the table lacks or holds
//! with another rule count) are rewritten; the first apply after a start rewrites all of them.
//!
//! # Limits
//!
//! - Conntrack as Calico uses it: a flow's first packet must be one conntrack accepts as NEW.
//!   An ICMP message that is not a request (echo reply, destination unreachable, time
//!   exceeded, redirect, ...) with no flow it belongs to is INVALID and dropped whatever the
//!   policy says; felix's BPF mode judges such packets by policy.
//! - Host-to-workload traffic is not policed by default, as in Calico (its `cali-OUTPUT`
//!   returns for `cali+`); felix's BPF mode polices it. [`Config::police_host_to_workload`]
//!   turns it on. Workload-to-host traffic gets the egress policy, then is accepted
//!   (Calico's `DefaultEndpointToHostAction: ACCEPT`).
//! - Dispatch is a linear list of interfaces (Calico builds a tree by name prefix): its cost
//!   grows with the number of local endpoints.
//! - IPv4 only; no host endpoints, no failsafe ports, no raw/mangle rules; no per-rule
//!   counters beyond iptables' own (each policy rule's comment names it). The nat table holds
//!   only the pools' `natOutgoing` masquerade ([`nat`], both dataplane modes).

pub mod nat;
mod render;
pub mod restore;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, str::FromStr};

pub use render::{
    CHAIN_ALLOW, CHAIN_FORWARD, CHAIN_FROM_WL_DISPATCH, CHAIN_INPUT, CHAIN_OUTPUT, CHAIN_PASS,
    CHAIN_TO_WL_DISPATCH, CHAIN_WL_TO_HOST, Chain, Cond, CtState, Desired, Endpoint, Hook,
    MARK_ACCEPT, MARK_PASS, MAX_CHAIN_NAME, MAX_SET_NAME, MULTIPORT_MAX, PREFIX, Rendered, Rule,
    SET_TEMP, Side, Skipped, Target, from_wl_chain, group_chain, render, rule_text, set_name,
    to_wl_chain,
};
pub use restore::{Applied, Cleaned};

use crate::calc::policy::calc::PolicyCalc;

use calico::model::Resource;

/// Which iptables writes the rules: `iptables-nft-restore` or `iptables-legacy-restore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    /// Both backends.
    pub const ALL: [Backend; 2] = [Backend::Nft, Backend::Legacy];

    /// `nft` or `legacy`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    /// The other backend (whose state a switch cleans).
    pub fn other(self) -> Backend {
        match self {
            Backend::Nft => Backend::Legacy,
            Backend::Legacy => Backend::Nft,
        }
    }

    /// The restore program.
    pub fn restore_program(self) -> &'static str {
        match self {
            Backend::Nft => "iptables-nft-restore",
            Backend::Legacy => "iptables-legacy-restore",
        }
    }

    /// The save program.
    pub fn save_program(self) -> &'static str {
        match self {
            Backend::Nft => "iptables-nft-save",
            Backend::Legacy => "iptables-legacy-save",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nft" => Ok(Backend::Nft),
            "legacy" => Ok(Backend::Legacy),
            other => Err(format!(
                "unknown iptables backend {other:?} (nft or legacy)"
            )),
        }
    }
}

/// How rules are rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interface name prefix of workload interfaces (`cali`).
    pub iface_prefix: String,
    /// Address sets of at most this many networks are written inline, one rule per network;
    /// larger ones become ipsets (0: every address test is an ipset).
    pub inline_max: usize,
    /// Judge packets the host sends to a workload by its ingress policy (Calico does not;
    /// felix's BPF mode does).
    pub police_host_to_workload: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            iface_prefix: "cali".into(),
            inline_max: 4,
            police_host_to_workload: false,
        }
    }
}

/// Why a policy could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{by}: ports without a protocol that has ports cannot be rendered")]
    PortsWithoutProtocol { by: String },
    #[error("{by}: ICMP type 255 cannot be matched by iptables (it means any type)")]
    IcmpType255 { by: String },
    #[error("chain name {name} is longer than {MAX_CHAIN_NAME} characters")]
    ChainName { name: String },
    #[error("two different groups or sets hash to the same name {name}")]
    NameCollision { name: String },
}

/// Why applying or cleaning failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{program} is not installed")]
    Missing { program: String },
    #[error("run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}\ninput:\n{input}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
        input: String,
    },
}

/// Applies `rendered` with `backend`, rewriting all our chains (one transaction).
pub fn apply(backend: Backend, rendered: &Rendered) -> Result<Applied, IptablesError> {
    restore::apply_with(backend, rendered, None)
}

/// Removes every chain, jump and unused ipset of ours from `backend`. A backend whose tools
/// are not installed is skipped (listed in [`Cleaned::missing_tools`]).
pub fn cleanup(backend: Backend) -> Result<Cleaned, IptablesError> {
    restore::cleanup(backend)
}

/// Cleans both backends and then every ipset of ours (what a switch to BPF mode runs).
pub fn cleanup_all() -> Result<Cleaned, IptablesError> {
    let mut total = Cleaned::default();
    for backend in Backend::ALL {
        let c = restore::cleanup(backend)?;
        total.chains += c.chains;
        total.jumps += c.jumps;
        total.sets += c.sets;
        total.sets_in_use = c.sets_in_use;
        total.missing_tools.extend(c.missing_tools);
    }
    total.missing_tools.sort();
    total.missing_tools.dedup();
    Ok(total)
}

/// What [`IptablesPolicy::program`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Programmed {
    pub applied: Applied,
    /// Endpoint keys the calculation has no workload endpoint for (their interfaces drop
    /// everything, as unknown interfaces do).
    pub missing: Vec<String>,
    /// Endpoints left out of the rules (bad interface name, ...): they drop everything.
    pub skipped: Vec<Skipped>,
}

/// The agent's policy state in iptables mode: the calculation, fed like
/// [`crate::dataplane::policy::engine::PolicyEngine`], and the last rules applied.
#[derive(Debug)]
pub struct IptablesPolicy {
    calc: PolicyCalc,
    config: Config,
    backend: Backend,
    last: Option<Rendered>,
}

impl IptablesPolicy {
    /// Nothing calculated or applied yet.
    pub fn new(backend: Backend, config: Config) -> Self {
        IptablesPolicy {
            calc: PolicyCalc::new(),
            config,
            backend,
            last: None,
        }
    }

    /// The backend the rules go to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A datastore value was written (kinds policy does not use are ignored).
    pub fn upsert(&mut self, key: &str, resource: &Resource) {
        self.calc.upsert(key, resource);
    }

    /// Replaces everything the calculation knows with `resources` (a full listing).
    pub fn replace_all(&mut self, resources: &[(String, Resource)]) {
        self.calc = PolicyCalc::new();
        for (key, resource) in resources {
            self.calc.upsert(key, resource);
        }
    }

    /// A datastore value was deleted.
    pub fn remove(&mut self, key: &str) {
        self.calc.remove(key);
    }

    /// Renders the policy of `endpoints` (interface name -> workload endpoint key; the
    /// interface need not exist yet) and applies it: the first call rewrites all our chains,
    /// later ones only those that changed. After an error the next call rewrites everything.
    pub fn program(
        &mut self,
        endpoints: &BTreeMap<String, String>,
    ) -> Result<Programmed, IptablesError> {
        let (desired, missing) = Desired::from_calc(&mut self.calc, endpoints);
        let rendered = render(&self.config, &desired)?;
        let previous = self.last.take();
        let applied = restore::apply_with(self.backend, &rendered, previous.as_ref())?;
        let skipped = rendered.skipped.clone();
        self.last = Some(rendered);
        Ok(Programmed {
            applied,
            missing,
            skipped,
        })
    }

    /// The rules of the last successful [`IptablesPolicy::program`].
    pub fn rendered(&self) -> Option<&Rendered> {
        self.last.as_ref()
    }

    /// Removes everything of ours from this backend (and unused ipsets).
    pub fn cleanup(&mut self) -> Result<Cleaned, IptablesError> {
        self.last = None;
        cleanup(self.backend)
    }
}
