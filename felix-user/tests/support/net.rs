//! A private network namespace for one test thread, so that FIB lookups made by the programs
//! under BPF_PROG_TEST_RUN see a known topology and nothing of the machine's own network.
//!
//! `unshare(CLONE_NEWNET)` moves only the calling thread; the namespace and everything in it
//! disappear when the test's thread ends.

use testkit::netns;

pub const UPLINK_NAME: &str = "up0";
pub const WORKLOAD_B_NAME: &str = "wlb";
pub const WORKLOAD_C_NAME: &str = "wlc";
pub const HOST_IP: [u8; 4] = [10, 0, 0, 1];
pub const PEER_HOST_IP: [u8; 4] = [10, 0, 0, 2];
pub const PEER_HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Interfaces of the private namespace.
pub struct TestNet {
    pub uplink: u32,
    pub workload_b: u32,
    pub workload_c: u32,
}

fn ip(args: &[&str]) {
    if let Err(e) = netns::ip(args) {
        panic!("{e}");
    }
}

fn ifindex(name: &str) -> u32 {
    netns::ifindex(name).unwrap_or_else(|e| panic!("{e}"))
}

impl TestNet {
    /// Moves this thread into a new network namespace and builds: `lo` up; `up0` (a veth, the
    /// uplink) with 10.0.0.1/24 and a permanent neighbour 10.0.0.2; veths `wlb` and `wlc`
    /// standing in for workload interfaces.
    pub fn enter() -> Self {
        netns::unshare_thread().unwrap_or_else(|e| panic!("{e}"));
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        ip(&["link", "set", "lo", "up"]);
        // bpf_fib_lookup refuses (FWD_DISABLED) where forwarding is off, as on a real host.
        std::fs::write("/proc/sys/net/ipv4/conf/all/forwarding", "1").expect("enable forwarding");
        ip(&[
            "link",
            "add",
            UPLINK_NAME,
            "address",
            &mac(UPLINK_MAC),
            "type",
            "veth",
            "peer",
            "name",
            "up1",
        ]);
        ip(&["link", "set", UPLINK_NAME, "up"]);
        ip(&["link", "set", "up1", "up"]);
        ip(&["addr", "add", "10.0.0.1/24", "dev", UPLINK_NAME]);
        ip(&[
            "neigh",
            "replace",
            "10.0.0.2",
            "lladdr",
            &mac(PEER_HOST_MAC),
            "dev",
            UPLINK_NAME,
            "nud",
            "permanent",
        ]);
        // This kernel has no dummy driver: veth pairs stand in for workload interfaces.
        for name in [WORKLOAD_B_NAME, WORKLOAD_C_NAME] {
            let peer = format!("{name}p");
            ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", name, "up"]);
            ip(&["link", "set", &peer, "up"]);
        }
        Self {
            uplink: ifindex(UPLINK_NAME),
            workload_b: ifindex(WORKLOAD_B_NAME),
            workload_c: ifindex(WORKLOAD_C_NAME),
        }
    }
}
