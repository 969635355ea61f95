//! Large policies through the whole pipeline: the etcd writes of the deny policies `bench
//! dataplane` builds ([`rules`]: 10,000 selector rules, each selecting its own
//! GlobalNetworkSet of 8 addresses, or 50,000 /32 rules in GlobalNetworkPolicies of 10,000
//! rules each), here selecting one local endpoint, until that endpoint's ingress slot holds the
//! set compiled from all of them.
//!
//! The sets go first (transactions of 128 puts), then each policy (one put each). Every change
//! of the endpoint's ingress (slot, set) is noted with its time; done when the state file shows
//! the noted set with every deny policy in its group, timed at that set's first sighting.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use felix_user::calc::policy::PolicyDirection;
use serde_json::Value;

use super::{
    POLL, Session, Target, alive,
    cluster::{RESOURCES, namespace_name},
    etcd,
    probe::{Live, side},
};
use crate::dataplane::rules::{self, Shape};

/// Shortest pause between two reads of the state file (it is large: reading it often would
/// take CPU from felix).
const STATE_READ_GAP: Duration = Duration::from_millis(20);

/// One large policy, programmed.
#[derive(Clone, Debug)]
pub struct LargePolicy {
    pub shape: Shape,
    pub rules: u32,
    /// GlobalNetworkSets written before the policies.
    pub sets: usize,
    /// GlobalNetworkPolicies holding the rules.
    pub policies: usize,
    /// Bytes of every value written.
    pub bytes: usize,
    /// First write until etcd answered the last.
    pub written: Duration,
    /// First write (a set's, else a policy's) until the ingress slot held the complete set.
    pub from_first_write: Duration,
    /// First policy put until then: what felix takes once the rules reach it.
    pub from_policy_write: Duration,
    /// Remote-address entries of the set (the state file's count).
    pub ips: usize,
}

/// The two measured policies: 10,000 selector rules and 50,000 /32 rules.
pub const MEASURED: [(Shape, u32); 2] = [(Shape::Selector, 10_000), (Shape::Cidr, 50_000)];

/// Writes the `n`-rule policy of `shape` selecting `target` and times it; see the module docs.
pub(super) fn measure(
    s: &mut Session,
    target: &Target,
    shape: Shape,
    n: u32,
) -> Result<LargePolicy> {
    let selector = format!(
        "app == 'app{}' && projectcalico.org/namespace == '{}'",
        target.pod.app,
        namespace_name(target.pod.namespace)
    );
    let (sets, policies) = documents(shape, n, &selector)?;
    // The state file names a group's policies by their etcd keys.
    let deny_keys: Vec<String> = policies.iter().map(|(key, _)| key.clone()).collect();
    let ingress = side(PolicyDirection::Ingress);
    let before = s
        .probe
        .live(target.ifindex)?
        .context("the endpoint left felix_ep_v2")?[ingress];
    let started = Instant::now();
    let mut bytes = s.rt.block_on(etcd::put_all(&mut s.client, &sets))?;
    let policy_started = Instant::now();
    for (key, value) in &policies {
        s.rt.block_on(etcd::put(&mut s.client, key, value))?;
        bytes += key.len() + value.to_string().len();
    }
    let written = started.elapsed();
    let deadline = started + s.settings.timeout;
    let mut seen: Vec<(Instant, Live)> = Vec::new();
    let mut last_read: Option<Instant> = None;
    let (done, ips) = loop {
        if let Some(now) = s.probe.live(target.ifindex)?
            && now[ingress] != before
            && seen.last().is_none_or(|(_, l)| *l != now[ingress])
        {
            seen.push((Instant::now(), now[ingress]));
        }
        if !seen.is_empty() && last_read.is_none_or(|t| t.elapsed() >= STATE_READ_GAP) {
            last_read = Some(Instant::now());
            if let Ok(state) = s.probe.state()
                && let Some((at, group)) = seen.iter().rev().find_map(|(at, live)| {
                    let group = state.group(live.slot).filter(|g| g.set == live.set)?;
                    Some((*at, group))
                })
                && deny_keys.iter().all(|d| group.policies.contains(d))
            {
                break (at, group.tables.ips);
            }
        }
        alive(
            &mut s.felix,
            deadline,
            &format!("waiting for {n} rules of {shape:?}"),
        )?;
        thread::sleep(POLL);
    };
    Ok(LargePolicy {
        shape,
        rules: n,
        sets: sets.len(),
        policies: policies.len(),
        bytes,
        written,
        from_first_write: done.duration_since(started),
        from_policy_write: done.duration_since(policy_started),
        ips,
    })
}

/// The sets and the deny policies (`bench-allow` left out) as etcd keys and values, the
/// policies' selector replaced by `selector`.
fn documents(shape: Shape, n: u32, selector: &str) -> Result<(Docs, Docs)> {
    let mut sets = Vec::new();
    let mut policies = Vec::new();
    for mut doc in rules::documents(shape, n, 0) {
        let name = doc["metadata"]["name"]
            .as_str()
            .context("a document without a name")?
            .to_owned();
        match doc["kind"].as_str() {
            Some("GlobalNetworkSet") => {
                sets.push((format!("{RESOURCES}/globalnetworksets/{name}"), doc));
            }
            Some("GlobalNetworkPolicy") if name.starts_with("bench-deny-") => {
                doc["spec"]["selector"] = Value::from(selector);
                policies.push((rules::policy_key(&name), doc));
            }
            _ => {}
        }
    }
    Ok((sets, policies))
}

type Docs = Vec<(String, Value)>;

/// What the policy is, for the report.
pub fn label(p: &LargePolicy) -> String {
    let what = match p.shape {
        Shape::Selector => "selector rules (a GlobalNetworkSet each)",
        Shape::Cidr => "/32 rules",
    };
    format!("{} {what}", crate::report::thousands(u64::from(p.rules)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_select_the_target_only_and_leave_the_allow_out() {
        let (sets, policies) = documents(Shape::Selector, 20, "app == 'x'").expect("documents");
        assert_eq!(sets.len(), 20);
        assert!(sets[0].0.contains("/globalnetworksets/bench-set-0"));
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].1["spec"]["selector"], "app == 'x'");
        let (sets, policies) = documents(Shape::Cidr, 25_000, "all()").expect("documents");
        assert!(sets.is_empty());
        assert_eq!(policies.len(), 3);
        assert!(policies.iter().all(|(k, _)| !k.ends_with("bench-allow")));
    }
}
