//! The uplink's XDP prefilter following the deny list and FelixConfiguration.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lab::Lab;
use lab::{cmd, felix};

use crate::support::{PINGS, XDP_BOUND, ip_in, poll_until, with_lab};

/// The `ethtool -k` features of `dev` in `ns` that an XDP program on the veth's peer turns off
/// (`veth_xdp_set` clears NETIF_F_GSO_SOFTWARE from the peer): whether TCP segmentation is on.
fn tcp_segmentation(ns: &str, dev: &str) -> Result<bool> {
    let text = cmd::stdout(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-k", dev]))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("tx-tcp-segmentation:"))
        .with_context(|| format!("no tx-tcp-segmentation in ethtool -k {dev}:\n{text}"))?;
    Ok(line.starts_with("tx-tcp-segmentation: on"))
}

/// Host `n`'s XDP state as its felix reports it in `felix status`.
fn status_xdp(lab: &Lab, n: u8) -> Result<Option<String>> {
    let node = lab.node(n);
    Ok(lab
        .felix_status()?
        .nodes
        .into_iter()
        .find(|s| s.node == node)
        .and_then(|s| s.xdp))
}

/// The uplink's XDP prefilter follows h2's deny list: with the list empty (as the lab starts) no
/// XDP program is on either uplink and the fabric side of each uplink veth keeps TCP
/// segmentation (an XDP program on a veth turns its peer's software GSO off, which cost
/// cross-host TCP about two thirds of its throughput). Adding an entry attaches XDP within
/// [`XDP_BOUND`]; the denied source (host h1) is dropped at XDP (counted) and reaches neither the
/// TC program nor the pod. A second entry removed again keeps XDP; removing the last one detaches
/// it, the peer gets its GSO back and the same ping passes. FelixConfiguration `xdpEnabled:
/// false` (felix restarts) keeps XDP off whatever the list holds, and status says `disabled`.
#[test]
fn xdp_denied_source_is_dropped_before_the_pod() -> Result<()> {
    with_lab(|lab| {
        let (h1, h2) = (lab.host(1)?.clone(), lab.host(2)?.clone());
        let fabric = lab.state().fabric_ns.clone();
        let remote = lab.pod(2, 1)?.clone();
        let deny = format!("{}/32", h1.ip);
        // Pod counters that a delivery would move (IPv6 noise from the veth itself aside).
        let delivered = |c: &felix::CountersDump| {
            c.packets_except(&remote.cali, "to_workload", &["drop_unsupported_l3"])
        };

        for n in [1, 2] {
            let dump = felix::ifaces(lab.felix_bin(), &lab.node(n))?;
            ensure!(
                dump.uplink_xdp("eth0") == Some("none"),
                "h{n}: XDP attached with an empty deny list: {dump:?}"
            );
            let link = ip_in(&lab.host(n)?.ns, &["-d", "link", "show", "eth0"])?;
            ensure!(!link.contains("prog/xdp"), "h{n} eth0 has XDP: {link}");
            ensure!(
                tcp_segmentation(&fabric, &format!("h{n}"))?,
                "the fabric side of h{n}'s uplink lost TCP segmentation without XDP"
            );
        }
        poll_until(Duration::from_secs(10), "status says idle", || {
            let xdp = status_xdp(lab, 2)?;
            Ok(if xdp.as_deref() == Some("idle") {
                Ok(())
            } else {
                Err(format!("h2 status xdp {xdp:?}"))
            })
        })?;

        lab.xdp_deny(2, &deny, true)?;
        let took = lab.wait_uplink_xdp(2, true, XDP_BOUND)?;
        println!("XDP attached on h2 {took:?} after `felix bpf xdp-deny add` returned");
        println!(
            "fabric side of h2's uplink with XDP attached: tx-tcp-segmentation {}",
            if tcp_segmentation(&fabric, "h2")? {
                "on"
            } else {
                "off"
            }
        );
        let before = lab.counters(2)?;
        let (stats, text) = lab.ping_from(&h1.ns, remote.ip, PINGS, &["-W", "1"])?;
        let after = lab.counters(2)?;
        ensure!(
            stats.transmitted == PINGS && stats.received == 0,
            "ping {} -> {} with {deny} denied on {}: {stats:?}\n{text}",
            h1.node,
            remote.name,
            h2.node
        );
        let xdp = after.grew(&before, "eth0", "xdp_uplink", "drop_xdp_denied");
        ensure!(
            xdp >= u64::from(PINGS),
            "h2 (eth0, xdp_uplink, drop_xdp_denied) grew by {xdp}, expected >= {PINGS}"
        );
        let decap = after.grew(&before, "eth0", "from_uplink", "decapsulated");
        ensure!(
            decap == 0,
            "h2 decapsulated {decap} packet(s) of a denied source"
        );
        let to_pod = delivered(&after).saturating_sub(delivered(&before));
        ensure!(to_pod == 0, "{to_pod} packet(s) reached {}", remote.name);
        poll_until(Duration::from_secs(10), "status says attached", || {
            let xdp = status_xdp(lab, 2)?;
            Ok(if xdp.as_deref() == Some("attached") {
                Ok(())
            } else {
                Err(format!("h2 status xdp {xdp:?}"))
            })
        })?;

        // Not the last entry: XDP stays.
        lab.xdp_deny(2, "10.99.0.0/16", true)?;
        lab.xdp_deny(2, "10.99.0.0/16", false)?;
        std::thread::sleep(Duration::from_millis(1500));
        lab.wait_uplink_xdp(2, true, Duration::ZERO)
            .context("XDP detached while the deny list still had an entry")?;

        lab.xdp_deny(2, &deny, false)?;
        let took = lab.wait_uplink_xdp(2, false, XDP_BOUND)?;
        println!("XDP detached on h2 {took:?} after `felix bpf xdp-deny del` returned");
        ensure!(
            tcp_segmentation(&fabric, "h2")?,
            "the fabric side of h2's uplink did not get TCP segmentation back"
        );
        let before = lab.counters(2)?;
        let (stats, text) = lab.ping_from(&h1.ns, remote.ip, PINGS, &[])?;
        let after = lab.counters(2)?;
        ensure!(
            stats.received == PINGS,
            "ping after xdp-deny del: {stats:?}\n{text}"
        );
        // The same counters move once the source is allowed: the checks above can fail.
        let to_pod = delivered(&after).saturating_sub(delivered(&before));
        ensure!(
            to_pod >= u64::from(PINGS),
            "after xdp-deny del only {to_pod} packet(s) reached {}",
            remote.name
        );
        ensure!(
            after.grew(&before, "eth0", "xdp_uplink", "drop_xdp_denied") == 0,
            "XDP still drops after xdp-deny del"
        );

        // XDPEnabled false (FelixConfiguration, felix restarts): no XDP even with an entry.
        let key = format!(
            "/calico/resources/v3/projectcalico.org/felixconfigurations/node.{}",
            h2.node
        );
        let resource = serde_json::json!({"apiVersion": "projectcalico.org/v3",
            "kind": "FelixConfiguration", "metadata": {"name": format!("node.{}", h2.node)},
            "spec": {"xdpEnabled": false}});
        lab::etcd::put_json(lab.state(), &key, &resource)?;
        let (_, took) = poll_until(Duration::from_secs(30), "status says disabled", || {
            let xdp = status_xdp(lab, 2)?;
            Ok(if xdp.as_deref() == Some("disabled") {
                Ok(())
            } else {
                Err(format!("h2 status xdp {xdp:?}"))
            })
        })?;
        println!("h2 restarted with XDPEnabled false after {took:?}");
        lab.xdp_deny(2, &deny, true)?;
        std::thread::sleep(Duration::from_millis(1500));
        lab.wait_uplink_xdp(2, false, Duration::ZERO)
            .context("XDP attached with XDPEnabled false")?;
        let (stats, text) = lab.ping_from(&h1.ns, remote.ip, PINGS, &[])?;
        ensure!(
            stats.received == PINGS,
            "XDPEnabled false enforces no deny list: {stats:?}\n{text}"
        );
        lab.xdp_deny(2, &deny, false)?;
        Ok(())
    })
}
