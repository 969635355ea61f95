//! NAT outgoing: pods of an IP pool with `natOutgoing: true` reach addresses outside every pool
//! with their host's address, as Calico's felix does it (its `cali-nat-outgoing` chain and the
//! `all-ipam-pools` / `masq-ipam-pools` sets, kept in step with the pools). felix writes the same
//! rule in both dataplane modes: in BPF mode the programs pass pod traffic to non-pod
//! destinations to the host stack, where netfilter masquerades it.
//!
//! ```text
//! nat POSTROUTING 1: -j felix-nat-outgoing
//! felix-nat-outgoing  -m set --match-set felix-masq-ipam-pools src
//!                     -m set ! --match-set felix-all-ipam-pools dst
//!                     [-m set ! --match-set felix-all-hosts-net dst]      (IPPoolsAndHostIPs)
//!                     -j MASQUERADE --random-fully
//! ```
//!
//! `felix-all-ipam-pools` holds every IPv4 pool (disabled ones too, as in Calico),
//! `felix-masq-ipam-pools` those with `natOutgoing`. Calico's default `natOutgoingExclusions`,
//! `IPPoolsOnly`, masquerades traffic to other hosts as well; `IPPoolsAndHostIPs` also leaves
//! the nodes' addresses (`felix-all-hosts-net`) alone. While no pool has `natOutgoing`, felix
//! has no chain in the nat table and none of these sets.
//!
//! A set is filled under a temporary name and swapped in (`ipset swap`), so the rule never sees
//! it half filled; the chain and its hook are rewritten in one `iptables-restore --noflush`
//! transaction. Applied when the wanted state changes (and at the first sync, which also removes
//! felix's nat rules from the other backend). They stay when felix exits, as Calico's do (a
//! restart keeps pods' outside traffic flowing); `felix bpf uninstall` removes them.
//!
//! Limits: IPv4 only; `LoadBalancer`-only pools count as pod pools (Calico leaves them out of
//! `all-ipam-pools`); no `natOutgoingAddress`, `natPortRange` or
//! `iptablesNATOutgoingInterfaceFilter`; rules changed behind felix's back are rewritten only
//! at the next change of the pools (Calico re-checks its tables periodically).

use std::{collections::BTreeSet, fmt::Write as _, path::Path};

use ipnet::Ipv4Net;
use tracing::warn;

use super::{
    Backend, IptablesError,
    render::SET_OPTIONS,
    restore::{self, Saved},
};
use crate::calc::topology::Topology;

/// The table felix's nat rules live in.
pub const TABLE: &str = "nat";
/// The built-in chain that jumps to [`CHAIN_NAT_OUTGOING`].
pub const HOOK: &str = "POSTROUTING";
/// The masquerade rule's chain.
pub const CHAIN_NAT_OUTGOING: &str = "felix-nat-outgoing";
/// Every IPv4 pool (Calico's `all-ipam-pools`).
pub const SET_ALL_POOLS: &str = "felix-all-ipam-pools";
/// The IPv4 pools with `natOutgoing` (Calico's `masq-ipam-pools`).
pub const SET_MASQ_POOLS: &str = "felix-masq-ipam-pools";
/// Every node's address, with [`Exclusions::IpPoolsAndHostIps`] (Calico's `all-hosts-net`).
pub const SET_ALL_HOSTS: &str = "felix-all-hosts-net";
/// Where a set is filled before it is swapped in.
const SET_NAT_TEMP: &str = "felix-nat-tmp";
/// Every set of this module.
const SETS: [&str; 3] = [SET_ALL_POOLS, SET_MASQ_POOLS, SET_ALL_HOSTS];

/// Which destinations outside the pools are not masqueraded (Calico's `natOutgoingExclusions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exclusions {
    /// Only the pools: traffic to other hosts is masqueraded (Calico's default).
    #[default]
    IpPoolsOnly,
    /// The pools and every node's address.
    IpPoolsAndHostIps,
}

/// What felix's nat rules should match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatOutgoing {
    /// Every IPv4 pool.
    pub all_pools: BTreeSet<Ipv4Net>,
    /// The IPv4 pools with `natOutgoing`.
    pub masq_pools: BTreeSet<Ipv4Net>,
    /// Nodes' addresses not masqueraded either; `None` with [`Exclusions::IpPoolsOnly`].
    pub hosts: Option<BTreeSet<Ipv4Net>>,
}

impl NatOutgoing {
    /// The pools (and nodes) of `topology`.
    pub fn from_topology(topology: &Topology, exclusions: Exclusions) -> Self {
        let pools = topology.pools.iter();
        NatOutgoing {
            all_pools: pools.clone().map(|pool| pool.cidr).collect(),
            masq_pools: pools
                .filter(|pool| pool.nat_outgoing)
                .map(|pool| pool.cidr)
                .collect(),
            hosts: match exclusions {
                Exclusions::IpPoolsOnly => None,
                Exclusions::IpPoolsAndHostIps => Some(
                    topology
                        .nodes
                        .values()
                        .map(|ip| Ipv4Net::from(*ip))
                        .collect(),
                ),
            },
        }
    }

    /// Whether some pool masquerades (felix has rules only then).
    pub fn active(&self) -> bool {
        !self.masq_pools.is_empty()
    }

    /// The sets the rule matches, with their members; none while inactive.
    pub fn sets(&self) -> Vec<(&'static str, &BTreeSet<Ipv4Net>)> {
        if !self.active() {
            return Vec::new();
        }
        let mut sets = vec![
            (SET_ALL_POOLS, &self.all_pools),
            (SET_MASQ_POOLS, &self.masq_pools),
        ];
        if let Some(hosts) = &self.hosts {
            sets.push((SET_ALL_HOSTS, hosts));
        }
        sets
    }

    /// The masquerade rule of [`CHAIN_NAT_OUTGOING`] (what follows `-A <chain>`); `None` while
    /// inactive.
    pub fn rule(&self) -> Option<String> {
        if !self.active() {
            return None;
        }
        let mut rule = format!(
            "-m comment --comment \"felix natOutgoing\" \
             -m set --match-set {SET_MASQ_POOLS} src -m set ! --match-set {SET_ALL_POOLS} dst"
        );
        if self.hosts.is_some() {
            let _ = write!(rule, " -m set ! --match-set {SET_ALL_HOSTS} dst");
        }
        rule.push_str(" -j MASQUERADE --random-fully");
        Some(rule)
    }
}

/// `ipset restore` text bringing the sets of `nat` to their members: each filled under
/// [`SET_NAT_TEMP`] and swapped in (an existing set, which rules may use, keeps its name).
pub fn ipset_script(nat: &NatOutgoing) -> String {
    let mut out = String::new();
    for (name, members) in nat.sets() {
        let _ = writeln!(out, "create {name} {SET_OPTIONS} -exist");
        let _ = writeln!(out, "create {SET_NAT_TEMP} {SET_OPTIONS} -exist");
        let _ = writeln!(out, "flush {SET_NAT_TEMP}");
        for net in members {
            let _ = writeln!(out, "add {SET_NAT_TEMP} {net}");
        }
        let _ = writeln!(out, "swap {SET_NAT_TEMP} {name}");
        let _ = writeln!(out, "destroy {SET_NAT_TEMP}");
    }
    out
}

/// The nat table transaction from `saved` (read from the nat table) to `nat`: our chain
/// rewritten with its hook as the first rule of [`HOOK`], every other chain and jump of ours
/// removed; while inactive, everything of ours removed (`None` when there is nothing).
pub fn restore_plan(nat: &NatOutgoing, saved: &Saved) -> Option<String> {
    let Some(rule) = nat.rule() else {
        return restore::cleanup_table_plan(TABLE, saved);
    };
    let hook = format!("-j {CHAIN_NAT_OUTGOING}");
    let mut decls = format!(":{CHAIN_NAT_OUTGOING} - [0:0]\n");
    let mut body = format!("-A {CHAIN_NAT_OUTGOING} {rule}\n");
    let mut tail = String::new();
    for name in saved.ours.keys().filter(|n| *n != CHAIN_NAT_OUTGOING) {
        let _ = writeln!(decls, ":{name} - [0:0]");
        let _ = writeln!(tail, "-X {name}");
    }
    let mut hooked = false;
    for (chain, specs) in &saved.others {
        let jumps: Vec<&String> = specs
            .iter()
            .filter(|s| restore::felix_target(s).is_some())
            .collect();
        if chain == HOOK && jumps.len() == 1 && specs.first() == Some(&hook) {
            hooked = true;
            continue;
        }
        for spec in jumps {
            let _ = writeln!(body, "-D {chain} {spec}");
        }
    }
    if !hooked {
        let _ = writeln!(body, "-I {HOOK} 1 {hook}");
    }
    Some(format!("*{TABLE}\n{decls}{body}{tail}COMMIT\n"))
}

/// The nat table of `backend` (read from a full `iptables-save`, which does not create tables).
fn read_nat_table(backend: Backend) -> Result<Saved, IptablesError> {
    let text = restore::run(backend.save_program(), &[], None)?;
    Ok(restore::parse_table_save(&text, TABLE))
}

/// Destroys the sets of this module `nat` does not use and no rule references; how many.
fn destroy_unused_sets(nat: &NatOutgoing) -> Result<usize, IptablesError> {
    let sets = match restore::read_sets() {
        Ok(sets) => sets,
        Err(IptablesError::Missing { .. }) if !nat.active() => return Ok(0),
        Err(e) => return Err(e),
    };
    let used: Vec<&str> = nat.sets().into_iter().map(|(name, _)| name).collect();
    let mut script = String::new();
    let mut destroyed = 0;
    for set in sets {
        let name = set.name.as_str();
        if SETS.contains(&name) && !used.contains(&name) && set.references == 0 {
            let _ = writeln!(script, "destroy {name}");
            destroyed += 1;
        }
    }
    if destroyed > 0 {
        restore::ipset_restore(&script)?;
    }
    Ok(destroyed)
}

/// Brings `backend`'s nat table and the sets to `nat`. Inactive, a backend or `ipset` that is
/// not installed has nothing of ours; active, it is an error.
pub fn apply(backend: Backend, nat: &NatOutgoing) -> Result<(), IptablesError> {
    if nat.active() {
        restore::ipset_restore(&ipset_script(nat))?;
    }
    let saved = match read_nat_table(backend) {
        Ok(saved) => Some(saved),
        Err(IptablesError::Missing { .. }) if !nat.active() => None,
        Err(e) => return Err(e),
    };
    if let Some(script) = saved.and_then(|saved| restore_plan(nat, &saved)) {
        restore::iptables_restore(backend, &script)?;
    }
    destroy_unused_sets(nat)?;
    Ok(())
}

/// Removes felix's nat chains and jumps from `backend`, then the sets of this module no rule
/// uses; how many chains and jumps there were.
pub fn cleanup(backend: Backend) -> Result<usize, IptablesError> {
    let saved = match read_nat_table(backend) {
        Ok(saved) => saved,
        Err(IptablesError::Missing { .. }) => Saved::default(),
        Err(e) => return Err(e),
    };
    let removed = saved.ours.len()
        + saved
            .others
            .values()
            .flatten()
            .filter(|spec| restore::felix_target(spec).is_some())
            .count();
    if let Some(script) = restore::cleanup_table_plan(TABLE, &saved) {
        restore::iptables_restore(backend, &script)?;
    }
    destroy_unused_sets(&NatOutgoing::default())?;
    Ok(removed)
}

/// Whether `program` is an executable on `PATH`.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file())
    })
}

/// The backend felix's nat rules use in BPF mode (which has no `IptablesBackend`): nft, or
/// legacy where only legacy's tools are installed.
pub fn bpf_mode_backend() -> Backend {
    if !installed(Backend::Nft.restore_program()) && installed(Backend::Legacy.restore_program()) {
        Backend::Legacy
    } else {
        Backend::Nft
    }
}

/// felix's nat rules on one backend and what was last applied there.
#[derive(Debug)]
pub struct NatOutgoingRules {
    backend: Backend,
    last: Option<NatOutgoing>,
}

impl NatOutgoingRules {
    /// Nothing applied yet.
    pub fn new(backend: Backend) -> Self {
        NatOutgoingRules {
            backend,
            last: None,
        }
    }

    /// The backend the rules go to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What was last applied.
    pub fn applied(&self) -> Option<&NatOutgoing> {
        self.last.as_ref()
    }

    /// Applies `want` unless it is what was last applied; the first sync also removes felix's
    /// nat rules from the other backend. Whether it applied anything. After an error the next
    /// sync applies again.
    pub fn sync(&mut self, want: NatOutgoing) -> Result<bool, IptablesError> {
        if self.last.as_ref() == Some(&want) {
            return Ok(false);
        }
        if self.last.is_none() {
            let other = self.backend.other();
            if let Err(error) = cleanup(other) {
                warn!(%error, backend = other.name(), "removing felix's nat rules");
            }
        }
        self.last = None;
        apply(self.backend, &want)?;
        self.last = Some(want);
        Ok(true)
    }

    /// Removes felix's nat rules from this backend (and the sets no rule uses).
    pub fn cleanup(&mut self) -> Result<usize, IptablesError> {
        self.last = None;
        cleanup(self.backend)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::Ipv4Addr};

    use calico::model::EncapMode;

    use super::*;
    use crate::calc::topology::encap::Pool;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("network")
    }

    fn pool(cidr: &str, nat_outgoing: bool) -> Pool {
        Pool {
            cidr: net(cidr),
            mode: EncapMode::Always,
            nat_outgoing,
        }
    }

    fn topology(pools: Vec<Pool>) -> Topology {
        Topology {
            pools,
            nodes: BTreeMap::from([
                ("h1".to_owned(), Ipv4Addr::new(10, 0, 0, 1)),
                ("h2".to_owned(), Ipv4Addr::new(10, 0, 0, 2)),
            ]),
            ..Topology::default()
        }
    }

    fn nets(list: &[&str]) -> BTreeSet<Ipv4Net> {
        list.iter().map(|s| net(s)).collect()
    }

    #[test]
    fn the_sets_follow_the_pools() {
        let view = topology(vec![
            pool("192.168.0.0/16", true),
            pool("172.16.0.0/16", false),
        ]);
        let nat = NatOutgoing::from_topology(&view, Exclusions::IpPoolsOnly);
        assert_eq!(nat.all_pools, nets(&["192.168.0.0/16", "172.16.0.0/16"]));
        assert_eq!(nat.masq_pools, nets(&["192.168.0.0/16"]));
        assert_eq!(nat.hosts, None);
        assert!(nat.active());
        let names: Vec<&str> = nat.sets().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, [SET_ALL_POOLS, SET_MASQ_POOLS]);

        let with_hosts = NatOutgoing::from_topology(&view, Exclusions::IpPoolsAndHostIps);
        assert_eq!(
            with_hosts.hosts,
            Some(nets(&["10.0.0.1/32", "10.0.0.2/32"]))
        );
        assert_eq!(with_hosts.sets().len(), 3);
    }

    #[test]
    fn no_pool_with_nat_outgoing_means_no_rule_and_no_set() {
        let nat = NatOutgoing::from_topology(
            &topology(vec![pool("192.168.0.0/16", false)]),
            Exclusions::IpPoolsAndHostIps,
        );
        assert!(!nat.active());
        assert_eq!(nat.rule(), None);
        assert!(nat.sets().is_empty());
        assert_eq!(ipset_script(&nat), "");
    }

    #[test]
    fn the_rule_masquerades_from_masq_pools_to_outside_every_pool() {
        let view = topology(vec![pool("192.168.0.0/16", true)]);
        let rule = NatOutgoing::from_topology(&view, Exclusions::IpPoolsOnly)
            .rule()
            .expect("active");
        assert_eq!(
            rule,
            "-m comment --comment \"felix natOutgoing\" \
             -m set --match-set felix-masq-ipam-pools src \
             -m set ! --match-set felix-all-ipam-pools dst -j MASQUERADE --random-fully"
        );
        let rule = NatOutgoing::from_topology(&view, Exclusions::IpPoolsAndHostIps)
            .rule()
            .expect("active");
        assert!(
            rule.contains(
                "! --match-set felix-all-ipam-pools dst -m set ! --match-set felix-all-hosts-net dst -j MASQUERADE"
            ),
            "{rule}"
        );
    }

    #[test]
    fn sets_are_filled_aside_and_swapped_in() {
        let nat = NatOutgoing::from_topology(
            &topology(vec![pool("192.168.0.0/16", true)]),
            Exclusions::IpPoolsOnly,
        );
        let script = ipset_script(&nat);
        let masq: Vec<&str> = script
            .lines()
            .skip_while(|l| !l.starts_with("create felix-masq-ipam-pools"))
            .collect();
        assert_eq!(
            masq,
            [
                format!("create felix-masq-ipam-pools {SET_OPTIONS} -exist").as_str(),
                &format!("create felix-nat-tmp {SET_OPTIONS} -exist"),
                "flush felix-nat-tmp",
                "add felix-nat-tmp 192.168.0.0/16",
                "swap felix-nat-tmp felix-masq-ipam-pools",
                "destroy felix-nat-tmp",
            ]
        );
        assert!(
            script.starts_with("create felix-all-ipam-pools "),
            "{script}"
        );
    }

    const EMPTY_NAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";

    fn active() -> NatOutgoing {
        NatOutgoing::from_topology(
            &topology(vec![pool("192.168.0.0/16", true)]),
            Exclusions::IpPoolsOnly,
        )
    }

    #[test]
    fn a_fresh_table_gets_the_chain_and_its_hook() {
        let saved = restore::parse_table_save(EMPTY_NAT, TABLE);
        let script = restore_plan(&active(), &saved).expect("a transaction");
        let rule = active().rule().expect("active");
        assert_eq!(
            script,
            format!(
                "*nat\n:felix-nat-outgoing - [0:0]\n-A felix-nat-outgoing {rule}\n\
                 -I POSTROUTING 1 -j felix-nat-outgoing\nCOMMIT\n"
            )
        );
    }

    #[test]
    fn a_hook_in_place_stays_and_misplaced_or_stale_ones_go() {
        let in_place = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j felix-FORWARD\nCOMMIT\n\
            *nat\n:POSTROUTING ACCEPT [0:0]\n:felix-nat-outgoing - [0:0]\n\
            -A POSTROUTING -j felix-nat-outgoing\n-A POSTROUTING -j KUBE-POSTROUTING\n\
            -A felix-nat-outgoing -j MASQUERADE\nCOMMIT\n";
        let script = restore_plan(&active(), &restore::parse_table_save(in_place, TABLE))
            .expect("the chain is rewritten");
        assert!(!script.contains("-D "), "{script}");
        assert!(!script.contains("-I "), "{script}");
        assert!(
            !script.contains("felix-FORWARD"),
            "the filter table is not ours here"
        );

        let misplaced = "*nat\n:POSTROUTING ACCEPT [0:0]\n:felix-old - [0:0]\n\
            -A POSTROUTING -j KUBE-POSTROUTING\n-A POSTROUTING -j felix-nat-outgoing\n\
            -A OUTPUT -j felix-old\nCOMMIT\n";
        let script = restore_plan(&active(), &restore::parse_table_save(misplaced, TABLE))
            .expect("a transaction");
        for line in [
            ":felix-old - [0:0]",
            "-D POSTROUTING -j felix-nat-outgoing",
            "-D OUTPUT -j felix-old",
            "-I POSTROUTING 1 -j felix-nat-outgoing",
            "-X felix-old",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "no {line:?} in\n{script}"
            );
        }
        assert!(
            !script.contains("KUBE-POSTROUTING"),
            "others' rules are left alone"
        );
        let delete = script.find("-D POSTROUTING").expect("delete");
        let insert = script.find("-I POSTROUTING").expect("insert");
        assert!(
            delete < insert,
            "the old jump goes before the new one comes"
        );
    }

    #[test]
    fn inactive_removes_everything_of_ours_or_does_nothing() {
        let ours = "*nat\n:POSTROUTING ACCEPT [0:0]\n:felix-nat-outgoing - [0:0]\n\
            -A POSTROUTING -j felix-nat-outgoing\n-A felix-nat-outgoing -j MASQUERADE\nCOMMIT\n";
        let script = restore_plan(
            &NatOutgoing::default(),
            &restore::parse_table_save(ours, TABLE),
        )
        .expect("a cleanup");
        assert_eq!(
            script,
            "*nat\n:felix-nat-outgoing - [0:0]\n-D POSTROUTING -j felix-nat-outgoing\n\
             -X felix-nat-outgoing\nCOMMIT\n"
        );
        let empty = restore::parse_table_save(EMPTY_NAT, TABLE);
        assert_eq!(restore_plan(&NatOutgoing::default(), &empty), None);
    }

    #[test]
    fn only_changes_are_applied() {
        let mut rules = NatOutgoingRules::new(Backend::Nft);
        // Pretend an apply worked: a sync of the same state runs nothing.
        rules.last = Some(active());
        assert!(!rules.sync(active()).expect("nothing to run"));
        assert_eq!(rules.applied(), Some(&active()));
    }
}
