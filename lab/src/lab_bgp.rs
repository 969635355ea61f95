//! [`Lab`]'s BGP methods: the ToR's and hosts' BIRD routes, bird-conf's status, session and
//! route waits, block claims. They live apart from [`crate::bgp`] so that module does not
//! depend on [`Lab`] (which starts BGP through it).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bgp::{bird_routes, host_files, not_established, poll, status_file, tor_files};
use crate::bird::{self, Protocol};
use crate::kroutes::{self, KernelRoute};
use crate::{Lab, ipam, names};

impl Lab {
    /// The ToR's namespace.
    pub fn tor_ns(&self) -> String {
        names::tor_ns(&self.state.id)
    }

    /// `birdc -s <host n's ctl> ARGS...`.
    pub fn host_birdc(&self, n: u8, args: &[&str]) -> Result<String> {
        bird::birdc(&host_files(&self.state, self.host(n)?).ctl, args)
    }

    /// `birdc -s <the ToR's ctl> ARGS...`.
    pub fn tor_birdc(&self, args: &[&str]) -> Result<String> {
        bird::birdc(&tor_files(&self.state).ctl, args)
    }

    /// Host `n`'s BIRD protocols (`show protocols`).
    pub fn host_protocols(&self, n: u8) -> Result<Vec<Protocol>> {
        bird::protocols(&host_files(&self.state, self.host(n)?).ctl)
    }

    /// The ToR's BIRD protocols.
    pub fn tor_protocols(&self) -> Result<Vec<Protocol>> {
        bird::protocols(&tor_files(&self.state).ctl)
    }

    /// The routes BIRD put into the ToR's kernel (`proto bird`).
    pub fn tor_routes(&self) -> Result<Vec<KernelRoute>> {
        Ok(bird_routes(kroutes::show(&self.tor_ns())?))
    }

    /// The routes BIRD put into host `n`'s kernel (`proto bird`; none in an Always pool).
    pub fn host_bird_routes(&self, n: u8) -> Result<Vec<KernelRoute>> {
        Ok(bird_routes(self.kernel_routes(n)?))
    }

    /// bird-conf's status file on host `n`.
    pub fn bird_conf_status(&self, n: u8) -> Result<Value> {
        let path = status_file(&self.state, self.host(n)?);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Waits until every BGP session of every host and of the ToR is established; how long it
    /// took.
    pub fn wait_bgp_established(&self, timeout: Duration) -> Result<Duration> {
        let hosts: Vec<u8> = self.state.hosts.iter().map(|h| h.n).collect();
        poll("BGP sessions established", timeout, || {
            let mut down = Vec::new();
            for &n in &hosts {
                down.extend(not_established(&format!("h{n}"), &self.host_protocols(n)?));
            }
            down.extend(not_established("tor", &self.tor_protocols()?));
            Ok(if down.is_empty() {
                Ok(())
            } else {
                Err(down.join("; "))
            })
        })
        .map(|((), took)| took)
    }

    /// Waits until the ToR's kernel routes `cidr` via `via` (`Some`), or has no route to it
    /// (`None`); how long it took.
    pub fn wait_tor_route(
        &self,
        cidr: &str,
        via: Option<Ipv4Addr>,
        timeout: Duration,
    ) -> Result<Duration> {
        let what = match via {
            Some(gw) => format!("ToR route {cidr} via {gw} proto bird"),
            None => format!("no ToR route to {cidr}"),
        };
        poll(&what, timeout, || {
            let routes = self.tor_routes()?;
            let have = kroutes::find(&routes, cidr);
            let ok = match via {
                Some(gw) => have.is_some_and(|r| r.gateway == Some(gw)),
                None => have.is_none(),
            };
            Ok(if ok {
                Ok(())
            } else {
                Err(format!("have {have:?}"))
            })
        })
        .map(|((), took)| took)
    }

    /// `felix ipam claim` of a new block for host `n` (as a node does when its blocks are full).
    pub fn claim_block(&self, n: u8) -> Result<String> {
        ipam::claim_block(&self.felix, &self.state, self.host(n)?)
    }

    /// Releases host `n`'s empty block `cidr` ([`ipam::release_block`]).
    pub fn release_block(&self, n: u8, cidr: &str) -> Result<()> {
        ipam::release_block(&self.state, self.host(n)?, cidr)
    }
}
