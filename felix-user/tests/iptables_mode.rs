//! iptables mode through the kernel, for both backends: the policy semantics table
//! (tests/policy-cases) rendered and applied as felix applies it, then real packets.
//!
//! Each scenario gets its own world of network namespaces, made by this test and gone with it
//! (a namespace lives while this process holds a descriptor of it, so nothing outlives the test
//! even when it fails or is killed): a "host" where the rules go, an "outside" namespace behind
//! the host's uplink veth (198.18.0.0/30) that stands for every remote address, and one "pod"
//! namespace per endpoint a check is about, behind a `cali*` veth with Calico's wiring (a /32
//! route to the veth, proxy ARP, the pod's default route via 169.254.1.1). Nothing is routed
//! out of these namespaces.
//!
//! A check's first packet (TCP SYN, UDP datagram, ICMP message, SCTP INIT, or a bare packet of
//! another protocol) is sent with a raw socket: an ingress check's from the outside namespace
//! (its source address spoofed there) to the pod, an egress check's from the pod to its
//! destination; the packet is looked for with a packet socket where it should arrive (the pod,
//! the outside namespace, or, when an egress check's destination is another pod of the world,
//! that pod: then that pod's ingress policy applies too). Arrived means allowed.
//!
//! Before the scenario's rules, the host holds the previous scenario's (applied by the same
//! `IptablesPolicy`), so each apply also replaces another policy in place; a second apply must
//! change nothing; after the probes, cleanup must leave no chain, jump or ipset of felix's.
//!
//! Needs root (`--features privileged-tests`), iptables (nft and legacy) and ipset.
#![cfg(feature = "privileged-tests")]

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    ffi::CString,
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use calico::model::{Object, Resource, WorkloadEndpointSpec};
use etherparse::{IpNumber, PacketBuilder};
use felix_user::{
    calc::policy::{
        L4, Packet, PolicyDirection,
        calc::PolicyCalc,
        cases::{self, Scenario},
        explain::probe_for,
        generate,
        program::Program,
    },
    iptables::{self, Backend, Config, IptablesPolicy},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const HOST_UPLINK: &str = "up0";
const OUTSIDE_IFACE: &str = "ext0";
const HOST_LINK_IP: &str = "198.18.0.1";
const OUTSIDE_LINK_IP: &str = "198.18.0.2";
/// Where warm-up packets from pods go (routed to the outside namespace).
const WARMUP_REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 250);
/// How long a probe may take to arrive.
const SETTLE: Duration = Duration::from_millis(400);

/// A network namespace this process holds open.
struct Netns {
    name: String,
    file: File,
}

fn check_rc(rc: libc::c_int, what: &str) {
    assert_eq!(rc, 0, "{what}: {}", std::io::Error::last_os_error());
}

impl Netns {
    /// A new, empty namespace with `lo` up.
    fn new(name: &str) -> Netns {
        let file = thread::spawn(|| {
            // SAFETY: plain syscall; moves only this short-lived thread.
            check_rc(unsafe { libc::unshare(libc::CLONE_NEWNET) }, "unshare");
            File::open("/proc/thread-self/ns/net").expect("open the new namespace")
        })
        .join()
        .expect("namespace thread");
        let ns = Netns {
            name: name.to_string(),
            file,
        };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A path `ip ... netns PATH` accepts.
    fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.file.as_raw_fd())
    }

    /// Runs `f` on a thread inside the namespace (children it starts are inside too).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let fd = self.file.as_raw_fd();
        thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: `fd` is an open namespace descriptor; moves only this thread.
                check_rc(unsafe { libc::setns(fd, libc::CLONE_NEWNET) }, "setns");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Runs a command inside; panics unless it succeeds. Its stdout.
    fn sh(&self, argv: &[&str]) -> String {
        let out = self.run(|| Command::new(argv[0]).args(&argv[1..]).output());
        let out = out.unwrap_or_else(|e| panic!("{}: run {argv:?}: {e}", self.name));
        assert!(
            out.status.success(),
            "{}: {argv:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sysctl(&self, path: &str, value: &str) {
        self.run(|| std::fs::write(format!("/proc/sys/{path}"), value))
            .unwrap_or_else(|e| panic!("{}: sysctl {path}: {e}", self.name));
    }
}

/// A pod: its namespace, host-side interface and addresses.
struct Pod {
    ns: Netns,
    iface: String,
    addrs: Vec<Ipv4Addr>,
}

struct World {
    host: Netns,
    outside: Netns,
    pods: Vec<Pod>,
}

impl World {
    /// The host, the outside namespace and a pod per `(interface, addresses)`.
    fn new(pods: &[(String, Vec<Ipv4Addr>)]) -> World {
        let host = Netns::new("host");
        let outside = Netns::new("outside");
        for ns in [&host, &outside] {
            ns.sysctl("net/ipv4/conf/all/rp_filter", "0");
            ns.sysctl("net/ipv4/conf/default/rp_filter", "0");
        }
        host.sysctl("net/ipv4/conf/all/forwarding", "1");
        host.sh(&[
            "ip",
            "link",
            "add",
            HOST_UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            OUTSIDE_IFACE,
            "netns",
            &outside.path(),
        ]);
        host.sh(&[
            "ip",
            "addr",
            "add",
            &format!("{HOST_LINK_IP}/30"),
            "dev",
            HOST_UPLINK,
        ]);
        host.sh(&["ip", "link", "set", HOST_UPLINK, "up"]);
        outside.sh(&[
            "ip",
            "addr",
            "add",
            &format!("{OUTSIDE_LINK_IP}/30"),
            "dev",
            OUTSIDE_IFACE,
        ]);
        outside.sh(&["ip", "link", "set", OUTSIDE_IFACE, "up"]);
        host.sh(&["ip", "route", "add", "default", "via", OUTSIDE_LINK_IP]);
        outside.sh(&["ip", "route", "add", "default", "via", HOST_LINK_IP]);
        let mut made = Vec::new();
        for (iface, addrs) in pods {
            let ns = Netns::new(iface);
            host.sh(&[
                "ip",
                "link",
                "add",
                iface,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns.path(),
            ]);
            for addr in addrs {
                ns.sh(&["ip", "addr", "add", &format!("{addr}/32"), "dev", "eth0"]);
            }
            ns.sh(&["ip", "link", "set", "eth0", "up"]);
            ns.sh(&[
                "ip",
                "route",
                "add",
                "169.254.1.1",
                "dev",
                "eth0",
                "scope",
                "link",
            ]);
            ns.sh(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ]);
            // Calico's settings of a workload interface.
            host.sysctl(&format!("net/ipv4/conf/{iface}/proxy_arp"), "1");
            host.sysctl(&format!("net/ipv4/neigh/{iface}/proxy_delay"), "0");
            host.sh(&["ip", "link", "set", iface, "up"]);
            for addr in addrs {
                host.sh(&["ip", "route", "add", &format!("{addr}/32"), "dev", iface]);
            }
            made.push(Pod {
                ns,
                iface: iface.clone(),
                addrs: addrs.clone(),
            });
        }
        World {
            host,
            outside,
            pods: made,
        }
    }

    fn pod_holding(&self, addr: Ipv4Addr) -> Option<&Pod> {
        self.pods.iter().find(|p| p.addrs.contains(&addr))
    }
}

/// A packet socket receiving every IPv4 packet that arrives on one interface.
struct Capture {
    fd: libc::c_int,
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: our own descriptor.
        unsafe { libc::close(self.fd) };
    }
}

impl Capture {
    fn open(ns: &Netns, iface: &str) -> Capture {
        let fd = ns.run(|| {
            let name = CString::new(iface).expect("interface name");
            // SAFETY: a NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(index, 0, "no interface {iface}");
            let proto = (libc::ETH_P_IP as u16).to_be();
            // SAFETY: plain syscalls on a descriptor we own; `sll` outlives the bind.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                );
                assert!(
                    fd >= 0,
                    "packet socket: {}",
                    std::io::Error::last_os_error()
                );
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = proto;
                sll.sll_ifindex = index as i32;
                let rc = libc::bind(
                    fd,
                    (&raw const sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                check_rc(rc, "bind packet socket");
                fd
            }
        });
        Capture { fd }
    }

    /// The IPv4 packets received (not sent) so far.
    fn drain(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: `buf` and `from` are valid for the lengths given.
            let (n, from) = unsafe {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast(),
                    &mut len,
                );
                (n, from)
            };
            if n <= 0 {
                break;
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                out.push(buf[..n as usize].to_vec());
            }
        }
        out
    }
}

/// Sends a whole IPv4 packet (header included) from `ns`.
fn send_raw(ns: &Netns, packet: &[u8], dst: Ipv4Addr) {
    ns.run(|| {
        // SAFETY: plain syscalls on a descriptor closed before returning; `addr` and `packet`
        // are valid for the lengths given.
        unsafe {
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            );
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as u16;
            addr.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
            let n = libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            assert_eq!(n, packet.len() as isize, "sendto {dst}: {err}");
        }
    });
}

/// CRC32c, as SCTP's checksum.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An SCTP packet holding an INIT chunk (what conntrack accepts as a new association).
fn sctp_init(sport: u16, dport: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 4]); // verification tag: 0 in an INIT
    p.extend_from_slice(&[0; 4]); // checksum, below
    p.extend_from_slice(&[1, 0, 0, 20]); // INIT, flags, length 20
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // initiate tag
    p.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    p.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    p.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
    let sum = crc32c(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

/// `packet` as a flow's first packet, with IP identification `id` (and ICMP identifier `id`).
fn first_packet(packet: &Packet, id: u16) -> Vec<u8> {
    let ip = || PacketBuilder::ipv4(packet.src.octets(), packet.dst.octets(), 64);
    let mut out = Vec::new();
    match (packet.proto, packet.l4) {
        (6, L4::Ports { src, dst }) => ip()
            .tcp(src, dst, 1, 64240)
            .syn()
            .write(&mut out, &[])
            .expect("write TCP"),
        (17, L4::Ports { src, dst }) => ip()
            .udp(src, dst)
            .write(&mut out, b"policy")
            .expect("write UDP"),
        (132, L4::Ports { src, dst }) => ip()
            .write(&mut out, IpNumber(132), &sctp_init(src, dst))
            .expect("write SCTP"),
        (1, L4::Icmp { icmp_type, code }) => {
            let [hi, lo] = id.to_be_bytes();
            ip().icmpv4_raw(icmp_type, code, [hi, lo, 0, 1])
                .write(&mut out, b"policy")
                .expect("write ICMP")
        }
        (proto, _) => ip()
            .write(&mut out, IpNumber(proto), &[0u8; 8])
            .expect("write IPv4"),
    }
    out[4..6].copy_from_slice(&id.to_be_bytes());
    out
}

/// Whether conntrack takes `packet` as a new flow (so that Calico's INVALID drop leaves it to
/// policy): ICMP only for requests (echo, timestamp, information, address mask).
fn conntrack_new(packet: &Packet) -> bool {
    match packet.l4 {
        L4::Icmp { icmp_type, .. } => matches!(icmp_type, 8 | 13 | 15 | 17),
        _ => true,
    }
}

/// Whether `captured` holds the probe `id` from `src` to `dst`.
fn arrived(captured: &[Vec<u8>], id: u16, src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> bool {
    captured.iter().any(|p| {
        p.len() >= 20
            && p[4..6] == id.to_be_bytes()
            && p[9] == proto
            && p[12..16] == src.octets()
            && p[16..20] == dst.octets()
    })
}

fn v4_addrs(o: &Object<WorkloadEndpointSpec>) -> Vec<Ipv4Addr> {
    o.spec
        .ip_networks
        .iter()
        .filter_map(|n| match n.0 {
            ipnet::IpNet::V4(n) => Some(n.addr()),
            ipnet::IpNet::V6(_) => None,
        })
        .collect()
}

fn endpoint_key(o: &Object<WorkloadEndpointSpec>) -> String {
    Resource::WorkloadEndpoint(o.clone()).key()
}

fn resources_of(scenario: &Scenario) -> Vec<(String, Resource)> {
    scenario
        .resources
        .iter()
        .map(|r| (r.key(), r.clone()))
        .collect()
}

/// The endpoints the checks of `scenario` are about: interface -> endpoint.
fn check_endpoints(scenario: &Scenario) -> BTreeMap<String, Object<WorkloadEndpointSpec>> {
    scenario
        .checks
        .iter()
        .filter_map(|c| scenario.endpoint(c))
        .map(|o| (o.spec.interface_name.clone(), o.clone()))
        .collect()
}

/// Felix's chains, jumps to them and ipsets in the host namespace.
fn felix_state(host: &Netns, backend: Backend) -> (BTreeSet<String>, usize, BTreeSet<String>) {
    let saved = host.sh(&[backend.save_program()]);
    let chains = saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with(iptables::PREFIX))
        .map(String::from)
        .collect();
    let jumps = saved
        .lines()
        .filter(|l| {
            l.starts_with("-A ")
                && !l[3..].starts_with(iptables::PREFIX)
                && (l.contains(" -j felix-") || l.contains(" -g felix-"))
        })
        .count();
    let sets = host
        .sh(&["ipset", "list", "-n"])
        .lines()
        .filter(|s| s.starts_with(iptables::PREFIX))
        .map(String::from)
        .collect();
    (chains, jumps, sets)
}

/// Sends a UDP packet both ways between the outside and every pod with no rules in place,
/// so that neighbours are resolved and a broken topology fails here, not as a policy verdict.
fn warm_up(world: &World) {
    let outside = Capture::open(&world.outside, OUTSIDE_IFACE);
    let pods: Vec<Capture> = world
        .pods
        .iter()
        .map(|p| Capture::open(&p.ns, "eth0"))
        .collect();
    let udp = |src: Ipv4Addr, dst: Ipv4Addr| Packet {
        src,
        dst,
        proto: 17,
        l4: L4::Ports { src: 9, dst: 9 },
    };
    let mut id = 0xf000u16;
    let mut expected = Vec::new();
    for (i, pod) in world.pods.iter().enumerate() {
        let addr = pod.addrs[0];
        id += 1;
        send_raw(
            &world.outside,
            &first_packet(&udp(WARMUP_REMOTE, addr), id),
            addr,
        );
        expected.push((i, id, WARMUP_REMOTE, addr));
        id += 1;
        send_raw(
            &pod.ns,
            &first_packet(&udp(addr, WARMUP_REMOTE), id),
            WARMUP_REMOTE,
        );
        expected.push((usize::MAX, id, addr, WARMUP_REMOTE));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got_outside = Vec::new();
    let mut got_pods: Vec<Vec<Vec<u8>>> = vec![Vec::new(); pods.len()];
    loop {
        thread::sleep(Duration::from_millis(50));
        got_outside.extend(outside.drain());
        for (i, c) in pods.iter().enumerate() {
            got_pods[i].extend(c.drain());
        }
        let missing: Vec<_> = expected
            .iter()
            .filter(|(i, id, src, dst)| {
                let seen = if *i == usize::MAX {
                    &got_outside
                } else {
                    &got_pods[*i]
                };
                !arrived(seen, *id, *src, *dst, 17)
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the test topology does not forward (no rules yet): missing {missing:?}"
        );
    }
}

/// One probe: who sends it, where it should arrive, and whether it should.
struct Probe {
    id: u16,
    packet: Packet,
    expect: bool,
    /// Index into the world's pods; `None`: the outside namespace.
    from: Option<usize>,
    /// Index into the world's pods; `None`: the outside namespace.
    seen_at: Option<usize>,
    what: String,
}

/// Sends every probe (captures open first), waits, and tells which arrived.
fn fire(world: &World, probes: &[Probe]) -> Vec<bool> {
    let outside = Capture::open(&world.outside, OUTSIDE_IFACE);
    let pods: Vec<Capture> = world
        .pods
        .iter()
        .map(|p| Capture::open(&p.ns, "eth0"))
        .collect();
    for probe in probes {
        let sender = match probe.from {
            Some(i) => &world.pods[i].ns,
            None => &world.outside,
        };
        send_raw(
            sender,
            &first_packet(&probe.packet, probe.id),
            probe.packet.dst,
        );
        thread::sleep(Duration::from_millis(2));
    }
    thread::sleep(SETTLE);
    let at_outside = outside.drain();
    let at_pods: Vec<Vec<Vec<u8>>> = pods.iter().map(Capture::drain).collect();
    probes
        .iter()
        .map(|probe| {
            let seen = match probe.seen_at {
                Some(i) => &at_pods[i],
                None => &at_outside,
            };
            let p = &probe.packet;
            arrived(seen, probe.id, p.src, p.dst, p.proto)
        })
        .collect()
}

/// Failures of `probes` whose arrival is not what they expect.
fn compare(probes: &[Probe], arrivals: &[bool], context: &str) -> Vec<String> {
    probes
        .iter()
        .zip(arrivals)
        .filter(|(probe, got)| **got != probe.expect)
        .map(|(probe, got)| {
            format!(
                "{context} {}: {} but the packet {}",
                probe.what,
                if probe.expect { "allow" } else { "deny" },
                if *got { "arrived" } else { "did not arrive" },
            )
        })
        .collect()
}

/// Runs every scenario of the semantics table through `backend`; returns the number of checks
/// and the failures.
fn semantics_table(backend: Backend) {
    let scenarios = cases::load_all(&cases::cases_dir()).expect("policy cases load");
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut invalid_overrides = 0;
    let mut previous: Option<&Scenario> = scenarios.last();
    for scenario in &scenarios {
        let endpoints = check_endpoints(scenario);
        let world = World::new(
            &endpoints
                .iter()
                .map(|(iface, o)| (iface.clone(), v4_addrs(o)))
                .collect::<Vec<_>>(),
        );
        warm_up(&world);

        // The previous scenario's policy first, then this one's, by the same policy state.
        let mut policy = IptablesPolicy::new(backend, Config::default());
        if let Some(prev) = previous {
            policy.replace_all(&resources_of(prev));
            let prev_endpoints: BTreeMap<String, String> = check_endpoints(prev)
                .iter()
                .map(|(iface, o)| (iface.clone(), endpoint_key(o)))
                .collect();
            world
                .host
                .run(|| policy.program(&prev_endpoints))
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: apply the previous policy: {e}",
                        scenario.path.display()
                    )
                });
        }
        policy.replace_all(&resources_of(scenario));
        let keys: BTreeMap<String, String> = endpoints
            .iter()
            .map(|(iface, o)| (iface.clone(), endpoint_key(o)))
            .collect();
        let programmed = world
            .host
            .run(|| policy.program(&keys))
            .unwrap_or_else(|e| panic!("{}: apply: {e}", scenario.path.display()));
        assert!(programmed.missing.is_empty() && programmed.skipped.is_empty());
        let again = world
            .host
            .run(|| policy.program(&keys))
            .expect("apply again");
        assert!(
            !again.applied.changed(),
            "{}: a second apply changed something: {:?}",
            scenario.path.display(),
            again.applied
        );
        let rendered = policy.rendered().expect("rendered").clone();
        let (chains, jumps, sets) = felix_state(&world.host, backend);
        let want_chains: BTreeSet<String> =
            rendered.chains.iter().map(|c| c.name.clone()).collect();
        assert_eq!(chains, want_chains, "{}: chains", scenario.path.display());
        assert_eq!(
            jumps,
            rendered.hooks.len(),
            "{}: hook jumps",
            scenario.path.display()
        );
        let want_sets: BTreeSet<String> = rendered.sets.keys().cloned().collect();
        assert_eq!(sets, want_sets, "{}: ipsets", scenario.path.display());

        // The probes.
        let mut calc = PolicyCalc::new();
        for (key, r) in resources_of(scenario) {
            calc.upsert(&key, &r);
        }
        let mut probes = Vec::new();
        for (i, check) in scenario.checks.iter().enumerate() {
            let ep = scenario.endpoint(check).expect("endpoint");
            let pod_index = world
                .pods
                .iter()
                .position(|p| p.iface == ep.spec.interface_name)
                .expect("pod of the check");
            let p = check.packet;
            let mut expect = check.expect_allow && conntrack_new(&p);
            if check.expect_allow && !conntrack_new(&p) {
                invalid_overrides += 1;
            }
            let (from, seen_at) = match check.direction {
                // From the outside, whatever the source: only this endpoint's policy applies.
                PolicyDirection::Ingress => (None, Some(pod_index)),
                PolicyDirection::Egress => match world.pod_holding(p.dst) {
                    Some(other) => {
                        // Pod to pod: the receiver's ingress policy too.
                        let o = endpoints.get(&other.iface).expect("endpoint of the pod");
                        let [(_, ingress), _] = calc.programs(&endpoint_key(o)).expect("programs");
                        expect &= ingress.evaluate(&probe_for(&p, PolicyDirection::Ingress)).0;
                        let at = world.pods.iter().position(|q| q.iface == other.iface);
                        (Some(pod_index), at)
                    }
                    None => (Some(pod_index), None),
                },
            };
            probes.push(Probe {
                id: 0x100 + u16::try_from(i).expect("few checks"),
                packet: p,
                expect,
                from,
                seen_at,
                what: format!("check {i}: {} (expected {})", check.describe(), check.by),
            });
        }
        let arrivals = fire(&world, &probes);
        checked += probes.len();
        failures.extend(compare(
            &probes,
            &arrivals,
            &scenario.path.display().to_string(),
        ));

        // Cleanup leaves nothing of felix's.
        let cleaned = world
            .host
            .run(|| policy.cleanup())
            .unwrap_or_else(|e| panic!("{}: cleanup: {e}", scenario.path.display()));
        assert_eq!(cleaned.chains, want_chains.len());
        let (chains, jumps, sets) = felix_state(&world.host, backend);
        assert!(
            chains.is_empty() && jumps == 0 && sets.is_empty(),
            "{}: left after cleanup: {chains:?}, {jumps} jumps, {sets:?}",
            scenario.path.display()
        );
        previous = Some(scenario);
    }
    println!(
        "{backend}: {checked} checks through the kernel, {} failed; {invalid_overrides} allowed \
         by policy are ICMP messages conntrack marks INVALID (dropped, as in Calico)",
        failures.len()
    );
    assert!(checked >= 150, "only {checked} checks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn semantics_table_through_iptables_nft() {
    semantics_table(Backend::Nft);
}

#[test]
fn semantics_table_through_iptables_legacy() {
    semantics_table(Backend::Legacy);
}

/// Switching backends: the other backend's chains and jumps go, shared ipsets stay in use
/// until the last rule using them goes; cleaning both leaves nothing.
#[test]
fn switching_backends_cleans_the_other() {
    let scenarios = cases::load_all(&cases::cases_dir()).expect("policy cases load");
    let scenario = scenarios
        .iter()
        .find(|s| s.path.ends_with("09-selectors.yaml"))
        .expect("selectors scenario");
    let endpoints = check_endpoints(scenario);
    let world = World::new(
        &endpoints
            .iter()
            .map(|(iface, o)| (iface.clone(), v4_addrs(o)))
            .collect::<Vec<_>>(),
    );
    let keys: BTreeMap<String, String> = endpoints
        .iter()
        .map(|(iface, o)| (iface.clone(), endpoint_key(o)))
        .collect();
    // Every address test an ipset, so that both backends use sets.
    let config = Config {
        inline_max: 0,
        ..Config::default()
    };
    let mut nft = IptablesPolicy::new(Backend::Nft, config.clone());
    nft.replace_all(&resources_of(scenario));
    world.host.run(|| nft.program(&keys)).expect("apply nft");
    let sets = nft.rendered().expect("rendered").sets.len();
    assert!(sets > 0, "the scenario uses no sets");
    let (nft_chains, _, nft_sets) = felix_state(&world.host, Backend::Nft);
    assert!(!nft_chains.is_empty());
    assert_eq!(nft_sets.len(), sets);

    // To legacy: the agent cleans the other backend, then applies.
    let mut legacy = IptablesPolicy::new(Backend::Legacy, config);
    legacy.replace_all(&resources_of(scenario));
    world
        .host
        .run(|| legacy.program(&keys))
        .expect("apply legacy");
    let cleaned = world
        .host
        .run(|| iptables::cleanup(Backend::Nft))
        .expect("clean nft");
    assert_eq!(cleaned.chains, nft_chains.len());
    assert_eq!(cleaned.sets, 0, "sets the legacy rules use were destroyed");
    assert_eq!(cleaned.sets_in_use, sets);
    let (chains, jumps, _) = felix_state(&world.host, Backend::Nft);
    assert!(chains.is_empty() && jumps == 0);
    let (legacy_chains, legacy_jumps, legacy_sets) = felix_state(&world.host, Backend::Legacy);
    assert_eq!(legacy_chains, nft_chains);
    assert_eq!(legacy_jumps, 2);
    assert_eq!(legacy_sets, nft_sets);

    // To BPF mode: everything goes.
    let all = world.host.run(iptables::cleanup_all).expect("clean all");
    assert_eq!(all.sets, sets);
    for backend in Backend::ALL {
        let (chains, jumps, sets) = felix_state(&world.host, backend);
        assert!(
            chains.is_empty() && jumps == 0 && sets.is_empty(),
            "{backend}"
        );
    }
    // Cleaning a clean host is a no-op, not an error.
    let again = world.host.run(iptables::cleanup_all).expect("clean again");
    assert_eq!((again.chains, again.jumps, again.sets), (0, 0, 0));
}

/// Random Calico worlds (policy::generate): six pods on the host, packets between them and to
/// and from outside, each sent by the real sender (a pod, or the outside namespace); the
/// kernel's verdict must be the program semantics of the sender's egress and the receiver's
/// ingress (whichever are local), less what conntrack marks INVALID.
fn random_worlds(backend: Backend, seed: u64) {
    const WORLDS: usize = 10;
    const PACKETS: usize = 40;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut failures = Vec::new();
    let (mut checked, mut denied) = (0, 0);
    for world_no in 0..WORLDS {
        let resources = generate::world(&mut rng);
        let workloads: Vec<Object<WorkloadEndpointSpec>> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::WorkloadEndpoint(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        let world = World::new(
            &workloads
                .iter()
                .map(|o| (o.spec.interface_name.clone(), v4_addrs(o)))
                .collect::<Vec<_>>(),
        );
        warm_up(&world);
        let listing: Vec<(String, Resource)> =
            resources.iter().map(|r| (r.key(), r.clone())).collect();
        let mut calc = PolicyCalc::new();
        for (key, r) in &listing {
            calc.upsert(key, r);
        }
        let config = Config {
            inline_max: rng.random_range(0..3),
            ..Config::default()
        };
        let mut policy = IptablesPolicy::new(backend, config);
        policy.replace_all(&listing);
        let keys: BTreeMap<String, String> = workloads
            .iter()
            .map(|o| (o.spec.interface_name.clone(), endpoint_key(o)))
            .collect();
        world
            .host
            .run(|| policy.program(&keys))
            .unwrap_or_else(|e| panic!("world {world_no}: apply: {e}"));

        let mut allows = |i: usize, dir: PolicyDirection, p: &Packet| {
            let [(_, ingress), (_, egress)] = calc
                .programs(&endpoint_key(&workloads[i]))
                .expect("programs");
            let program = match dir {
                PolicyDirection::Ingress => ingress,
                PolicyDirection::Egress => egress,
            };
            program.evaluate(&probe_for(p, dir)).0
        };
        let mut flows = HashSet::new();
        let mut probes = Vec::new();
        for n in 0..PACKETS {
            let a = rng.random_range(0..workloads.len());
            let local = world.pods[a].addrs[0];
            let direction = if rng.random_bool(0.5) {
                PolicyDirection::Ingress
            } else {
                PolicyDirection::Egress
            };
            let p = generate::packet(&mut rng, local, direction);
            let remote = match direction {
                PolicyDirection::Ingress => p.src,
                PolicyDirection::Egress => p.dst,
            };
            // To itself never leaves the pod; a packet whose reverse was sent before could be
            // taken by conntrack as that flow's reply.
            let flow = (p.src, p.dst, p.proto, p.src_port(), p.dst_port());
            let reverse = (p.dst, p.src, p.proto, p.dst_port(), p.src_port());
            if remote == local || flows.contains(&reverse) {
                continue;
            }
            flows.insert(flow);
            let other = world.pods.iter().position(|q| q.addrs.contains(&remote));
            let (from, seen_at, expect) = match (direction, other) {
                (PolicyDirection::Ingress, Some(b)) => (
                    Some(b),
                    Some(a),
                    allows(a, direction, &p) && allows(b, PolicyDirection::Egress, &p),
                ),
                (PolicyDirection::Ingress, None) => (None, Some(a), allows(a, direction, &p)),
                (PolicyDirection::Egress, Some(b)) => (
                    Some(a),
                    Some(b),
                    allows(a, direction, &p) && allows(b, PolicyDirection::Ingress, &p),
                ),
                (PolicyDirection::Egress, None) => (Some(a), None, allows(a, direction, &p)),
            };
            let expect = expect && conntrack_new(&p);
            denied += usize::from(!expect);
            probes.push(Probe {
                id: 0x200 + u16::try_from(n).expect("few packets"),
                packet: p,
                expect,
                from,
                seen_at,
                what: format!(
                    "packet {n}: {direction:?} of {} {p:?}",
                    workloads[a].metadata.name
                ),
            });
        }
        let arrivals = fire(&world, &probes);
        checked += probes.len();
        failures.extend(compare(&probes, &arrivals, &format!("world {world_no}")));
        if !failures.is_empty() {
            eprintln!("world {world_no} resources: {resources:#?}");
            break;
        }
    }
    println!(
        "{backend}: {checked} random packets through the kernel, {} allowed",
        checked - denied
    );
    assert!(checked >= WORLDS * PACKETS / 2, "only {checked} packets");
    assert!(
        denied > 0 && denied < checked,
        "{denied} of {checked} denied"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn random_worlds_through_iptables_nft() {
    random_worlds(Backend::Nft, 0x5eed_0001);
}

#[test]
fn random_worlds_through_iptables_legacy() {
    random_worlds(Backend::Legacy, 0x5eed_0002);
}

/// An ingress program of `n` rules the probe does not match (each a TCP port from a /32),
/// then an allow of TCP port 80.
fn many_rules(n: u16) -> Program {
    use felix_user::calc::policy::{
        RuleRef,
        program::{AddrMatch, Entry, Match, PortMatch, ProtoMatch, Step},
    };
    let by = |index: usize| RuleRef::Policy {
        tier: "default".into(),
        policy: "big".into(),
        direction: PolicyDirection::Ingress,
        index,
    };
    let tcp = |port: u16, remote: Option<Ipv4Addr>| Match {
        proto: ProtoMatch {
            is: Some(6),
            not: None,
        },
        remote: AddrMatch {
            all_of: remote
                .map(|a| std::sync::Arc::new(vec![ipnet::Ipv4Net::from(a)]))
                .into_iter()
                .collect(),
            none_of: Vec::new(),
        },
        dst_ports: PortMatch {
            any_of: vec![(port, port)],
            none_of: Vec::new(),
        },
        src_ports: PortMatch::default(),
    };
    let mut entries: Vec<Entry> = (0..n)
        .map(|i| Entry {
            by: by(usize::from(i)),
            step: Step::Allow,
            matcher: Some(tcp(
                1000 + i % 50_000,
                Some(Ipv4Addr::new(10, 200, (i >> 8) as u8, i as u8)),
            )),
        })
        .collect();
    entries.push(Entry {
        by: by(usize::from(n)),
        step: Step::Allow,
        matcher: Some(tcp(80, None)),
    });
    entries.push(Entry {
        by: RuleRef::EndOfTier {
            tier: "default".into(),
            direction: PolicyDirection::Ingress,
        },
        step: Step::EndOfTier { pass: false },
        matcher: None,
    });
    Program {
        entries,
        default_deny: RuleRef::DefaultDeny {
            direction: PolicyDirection::Ingress,
        },
    }
}

/// 10,000 rules: rendered, applied and replaced by each backend in seconds, and enforced.
#[test]
fn ten_thousand_rules_apply_and_filter() {
    use felix_user::calc::policy::calc::GroupKey;
    let world = World::new(&[("cali1".to_string(), vec![Ipv4Addr::new(10, 65, 0, 1)])]);
    warm_up(&world);
    let key = |policies: &[&str], direction| GroupKey {
        direction,
        policies: policies.iter().map(|s| s.to_string()).collect(),
        profiles: Vec::new(),
        local_mask: Vec::new(),
        local_ports: Vec::new(),
    };
    let allow_all = Program {
        entries: Vec::new(),
        default_deny: felix_user::calc::policy::RuleRef::DefaultDeny {
            direction: PolicyDirection::Egress,
        },
    };
    for backend in Backend::ALL {
        let mut timings = Vec::new();
        let mut previous: Option<iptables::Rendered> = None;
        for (n, policy) in [(10_000, "big"), (10_001, "bigger")] {
            let ingress = key(&[policy], PolicyDirection::Ingress);
            let egress = key(&[], PolicyDirection::Egress);
            let desired = iptables::Desired {
                endpoints: vec![iptables::Endpoint {
                    iface: "cali1".into(),
                    ingress: ingress.clone(),
                    egress: egress.clone(),
                }],
                programs: [(ingress, many_rules(n)), (egress, allow_all.clone())]
                    .into_iter()
                    .collect(),
            };
            let start = Instant::now();
            let rendered = iptables::render(&Config::default(), &desired).expect("renders");
            let rendering = start.elapsed();
            let start = Instant::now();
            let applied = world
                .host
                .run(|| iptables::restore::apply_with(backend, &rendered, previous.as_ref()))
                .unwrap_or_else(|e| panic!("{backend}: apply {n} rules: {e}"));
            timings.push(format!(
                "{n} rules: render {rendering:?}, apply {:?} ({} chains written, {} deleted)",
                start.elapsed(),
                applied.chains_written,
                applied.chains_deleted
            ));
            assert!(applied.rules > n as usize);
            previous = Some(rendered);
        }
        println!("{backend}: {}", timings.join("; "));
        let probe = |dport: u16, id: u16| Probe {
            id,
            packet: Packet {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(10, 65, 0, 1),
                proto: 6,
                l4: L4::Ports {
                    src: 40000 + id,
                    dst: dport,
                },
            },
            expect: dport == 80,
            from: None,
            seen_at: Some(0),
            what: format!("tcp to {dport}"),
        };
        let probes = [probe(80, 1), probe(1005, 2), probe(81, 3)];
        let failures = compare(&probes, &fire(&world, &probes), backend.name());
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        world
            .host
            .run(|| iptables::cleanup(backend))
            .expect("cleanup");
    }
}
