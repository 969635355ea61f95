//! The kernel routing table of a lab host (`ip -j route show table main`) and what felix must have
//! programmed there: per local pod `<ip> dev <cali> scope link proto 80`, its block's
//! `blackhole <block> proto 80`, and per other host `<block> via <host ip> dev eth0 proto 80
//! onlink mtu <fabric MTU - 20>` (without the MTU when the pool's `ipipMode` routes natively).

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cmd::ip;
use crate::state::{HostState, LabState};

/// The route protocol number felix marks its routes with (`ip route` shows `proto 80`).
pub const FELIX_PROTO: &str = "80";

/// One route of `ip -j route show`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct KernelRoute {
    /// `unicast` when absent; `blackhole`, `local`, ...
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `192.168.2.1` (a /32 is printed without its length), `192.168.2.0/26` or `default`.
    pub dst: String,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Absent for `boot` (the default of `ip route add`).
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<serde_json::Value>,
}

impl KernelRoute {
    /// The protocol as `ip route` names it (`boot` when the JSON has none).
    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("boot")
    }

    /// Marked as felix's.
    pub fn is_felix(&self) -> bool {
        self.protocol() == FELIX_PROTO
    }

    pub fn is_blackhole(&self) -> bool {
        self.kind.as_deref() == Some("blackhole")
    }

    /// The destination with its prefix length (`192.168.2.1/32`).
    pub fn cidr(&self) -> String {
        if self.dst.contains('/') || self.dst == "default" {
            self.dst.clone()
        } else {
            format!("{}/32", self.dst)
        }
    }

    /// The route's `mtu` metric, if set.
    pub fn mtu(&self) -> Option<u64> {
        self.metrics.iter().find_map(|m| m.get("mtu")?.as_u64())
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Parses `ip -j route show` output.
pub fn parse(json: &str) -> Result<Vec<KernelRoute>> {
    serde_json::from_str(json).with_context(|| format!("parsing `ip -j route show`: {json}"))
}

/// The main table of namespace `ns`.
pub fn show(ns: &str) -> Result<Vec<KernelRoute>> {
    parse(&ip(&["-j", "-n", ns, "route", "show", "table", "main"])?)
}

/// The route to exactly `cidr`, if any.
pub fn find<'a>(routes: &'a [KernelRoute], cidr: &str) -> Option<&'a KernelRoute> {
    routes.iter().find(|r| r.cidr() == cidr)
}

/// How strictly [`missing`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Destination, protocol 80, device or gateway: what traffic and BIRD depend on (readiness).
    Essential,
    /// Also `scope link` on pod routes, `onlink` and the MTU on remote-block routes.
    Exact,
}

/// What `routes` (host's main table) lacks of felix's routes; empty when all are there.
pub fn missing(
    state: &LabState,
    host: &HostState,
    routes: &[KernelRoute],
    check: Check,
) -> Vec<String> {
    let exact = check == Check::Exact;
    let mut missing = Vec::new();
    let mut want =
        |cidr: &str, what: &str, ok: &dyn Fn(&KernelRoute) -> bool| match find(routes, cidr) {
            Some(r) if r.is_felix() && ok(r) => {}
            other => missing.push(format!(
                "{cidr} {what} proto {FELIX_PROTO} (have {other:?})"
            )),
        };
    for pod in &host.pods {
        want(
            &format!("{}/32", pod.ip),
            &format!("dev {}", pod.cali),
            &|r| {
                r.kind.is_none()
                    && r.dev.as_deref() == Some(pod.cali.as_str())
                    && (!exact || r.scope.as_deref() == Some("link"))
            },
        );
    }
    want(&host.block, "blackhole", &|r| r.is_blackhole());
    let mtu = state
        .pool_ipip_mode
        .encapsulates_in_lab()
        .then_some(u64::from(state.tunnel_mtu()));
    let mtu_text = mtu.map_or_else(|| "no mtu".to_owned(), |m| format!("mtu {m}"));
    for other in state.hosts.iter().filter(|o| o.n != host.n) {
        want(
            &other.block,
            &format!("via {} dev eth0 onlink {mtu_text}", other.ip),
            &|r| {
                r.kind.is_none()
                    && r.gateway == Some(other.ip)
                    && r.dev.as_deref() == Some("eth0")
                    && (!exact || (r.has_flag("onlink") && r.mtu() == mtu))
            },
        );
    }
    missing
}

/// felix's routes in `routes` that the lab does not expect (e.g. a pod that is gone).
pub fn unexpected(state: &LabState, host: &HostState, routes: &[KernelRoute]) -> Vec<String> {
    let mut expected: Vec<String> = host.pods.iter().map(|p| format!("{}/32", p.ip)).collect();
    expected.extend(state.hosts.iter().map(|h| h.block.clone()));
    routes
        .iter()
        .filter(|r| r.is_felix() && !expected.contains(&r.cidr()))
        .map(|r| format!("{r:?}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"[{"dst":"10.0.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.0.0.1","flags":[]},
      {"type":"blackhole","dst":"192.168.0.0/26","protocol":"80","flags":[]},
      {"dst":"192.168.0.0","dev":"CALI1","protocol":"80","scope":"link","flags":[]},
      {"dst":"192.168.0.1","dev":"CALI2","protocol":"80","scope":"link","flags":[]},
      {"dst":"192.168.0.64/26","gateway":"10.0.0.2","dev":"eth0","protocol":"80","flags":["onlink"],"metrics":[{"mtu":1480}]},
      {"dst":"198.51.100.0/24","dev":"eth0","scope":"link","flags":[]}]"#;

    fn plan_with_table() -> Result<(LabState, String)> {
        let plan = crate::state::addressed_plan("fx0001");
        let table = TABLE
            .replace("CALI1", &plan.hosts[0].pods[0].cali)
            .replace("CALI2", &plan.hosts[0].pods[1].cali);
        Ok((plan, table))
    }

    #[test]
    fn parses_ip_route_json() -> Result<()> {
        let routes = parse(TABLE)?;
        assert_eq!(routes.len(), 6);
        let foreign = find(&routes, "198.51.100.0/24").context("foreign")?;
        assert_eq!(foreign.protocol(), "boot");
        assert!(!foreign.is_felix());
        let pod = find(&routes, "192.168.0.0/32").context("pod")?;
        assert!(pod.is_felix());
        assert!(find(&routes, "192.168.0.0/26").is_some_and(KernelRoute::is_blackhole));
        let remote = find(&routes, "192.168.0.64/26").context("remote")?;
        assert_eq!(remote.mtu(), Some(1480));
        assert!(remote.has_flag("onlink"));
        Ok(())
    }

    #[test]
    fn complete_table_has_nothing_missing() -> Result<()> {
        let (plan, table) = plan_with_table()?;
        let routes = parse(&table)?;
        let h1 = &plan.hosts[0];
        assert_eq!(
            missing(&plan, h1, &routes, Check::Exact),
            Vec::<String>::new()
        );
        assert!(unexpected(&plan, h1, &routes).is_empty());
        Ok(())
    }

    #[test]
    fn reports_what_is_missing_or_wrong() -> Result<()> {
        let (plan, table) = plan_with_table()?;
        let h1 = &plan.hosts[0];
        // A pod route gone, the MTU missing, and the other host's routes don't apply to h1.
        let mut routes = parse(&table)?;
        routes.retain(|r| r.dst != "192.168.0.1");
        if let Some(r) = routes.iter_mut().find(|r| r.dst == "192.168.0.64/26") {
            r.metrics.clear();
        }
        let exact = missing(&plan, h1, &routes, Check::Exact);
        assert_eq!(exact.len(), 2, "{exact:?}");
        assert!(exact[0].starts_with("192.168.0.1/32"), "{exact:?}");
        assert!(exact[1].starts_with("192.168.0.64/26"), "{exact:?}");
        assert_eq!(missing(&plan, h1, &routes, Check::Essential).len(), 1);
        // Same routes with another protocol are not felix's.
        let boot = parse(&table.replace(r#""protocol":"80","#, ""))?;
        assert_eq!(missing(&plan, h1, &boot, Check::Essential).len(), 4);
        Ok(())
    }
}
