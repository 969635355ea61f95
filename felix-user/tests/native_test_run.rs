//! Tier 2: native routing (an IP pool's `ipipMode` `Never`, or `CrossSubnet` to a host on this
//! subnet) against IPIP, through the real programs with BPF_PROG_TEST_RUN. The remote block
//! 192.168.3.0/26 of host 10.0.0.2 is re-seeded with or without the native flag; the private
//! namespace gets the kernel route felix programs for it (`via 10.0.0.2 dev up0 onlink`), which
//! the programs' FIB lookup follows. Needs root and bpffs; built with `--features
//! privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod support;

use std::process::Command;

use aya::maps::lpm_trie::Key;
use felix_common::{
    CtKey, Direction, Reason, RouteValue, conntrack::ct_flags, policy::NO_SLOT,
    routes::PoolIpipMode,
};
use felix_user::{
    PROG_FROM_UPLINK, PROG_FROM_WORKLOAD, PROG_TO_UPLINK,
    calc::policy::{
        PolicyDirection, RuleRef,
        program::{Entry, Match, Program, Step},
    },
};

use support::{
    harness::{Harness, On, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, WORKLOAD_A},
    icmp,
    net::{HOST_IP, PEER_HOST_IP, PEER_HOST_MAC, UPLINK_MAC},
    packet::{self, IP_OFFSET, POD_IP, REMOTE_POD_IP},
};

const FROM_A: On = On::iface(WORKLOAD_A);
const IPPROTO_IPIP: u8 = 4;

/// Re-seeds the remote block's route: native or IPIP, under pool mode `mode`.
fn seed_remote_block(h: &mut Harness, mode: PoolIpipMode, native: bool) {
    h.dataplane()
        .routes()
        .expect("routes map")
        .insert(
            &Key::new(26, [192, 168, 3, 0]),
            RouteValue::remote_block(PEER_HOST_IP, mode, native),
            0,
        )
        .expect("seed remote block");
}

/// The kernel route felix programs for a native remote block, in the test's namespace.
fn add_kernel_route_to_remote_block() {
    let status = Command::new("ip")
        .args([
            "route",
            "add",
            "192.168.3.0/26",
            "via",
            "10.0.0.2",
            "dev",
            support::net::UPLINK_NAME,
            "onlink",
        ])
        .status()
        .expect("run ip route add");
    assert!(status.success(), "ip route add failed");
}

/// Checks a packet forwarded natively: MACs from the FIB (uplink to the owning host), the IP
/// packet as sent but one TTL lower with a valid checksum, and no outer header.
fn assert_forwarded_natively(sent: &[u8], out: &[u8]) {
    assert_eq!(out.len(), sent.len(), "no outer header added");
    assert_eq!(&out[..6], &PEER_HOST_MAC, "next hop's MAC from the FIB");
    assert_eq!(&out[6..12], &UPLINK_MAC, "uplink's MAC from the FIB");
    assert_eq!(&out[12..14], &[0x08, 0x00], "ethertype IPv4");
    assert_ne!(out[IP_OFFSET + 9], IPPROTO_IPIP, "not IPIP");
    assert_eq!(
        out[IP_OFFSET + 8],
        sent[IP_OFFSET + 8] - 1,
        "TTL decremented"
    );
    assert!(packet::ipv4_checksum_ok(out, IP_OFFSET), "IPv4 checksum");
    assert_eq!(
        &out[IP_OFFSET..IP_OFFSET + 8],
        &sent[IP_OFFSET..IP_OFFSET + 8]
    );
    assert_eq!(
        &out[IP_OFFSET + 12..],
        &sent[IP_OFFSET + 12..],
        "addresses and payload untouched"
    );
}

#[test]
fn a_native_remote_block_is_forwarded_as_is_and_an_ipip_one_is_wrapped() {
    let mut h = Harness::new("native");
    add_kernel_route_to_remote_block();
    let frame = packet::udp_between(POD_IP, REMOTE_POD_IP, 64, b"natively");

    for mode in [PoolIpipMode::Never, PoolIpipMode::CrossSubnet] {
        seed_remote_block(&mut h, mode, true);
        let out = h.expect(
            PROG_FROM_WORKLOAD,
            FROM_A,
            &frame,
            Direction::FromWorkload,
            Reason::ForwardedNative,
            TC_ACT_REDIRECT,
        );
        assert_forwarded_natively(&frame, &out.data_out);
    }

    // The same block, the same packet, through IPIP once the route says so (a live switch).
    seed_remote_block(&mut h, PoolIpipMode::Always, false);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &frame,
        Direction::FromWorkload,
        Reason::Encapsulated,
        TC_ACT_REDIRECT,
    );
    assert_eq!(out.data_out.len(), frame.len() + 20, "outer header added");
    assert_eq!(
        out.data_out[IP_OFFSET + 9],
        IPPROTO_IPIP,
        "outer protocol 4"
    );
    assert_eq!(&out.data_out[IP_OFFSET + 12..IP_OFFSET + 16], &HOST_IP);
    assert_eq!(&out.data_out[IP_OFFSET + 16..IP_OFFSET + 20], &PEER_HOST_IP);
    assert_eq!(
        &out.data_out[IP_OFFSET + 20 + 12..IP_OFFSET + 20 + 20],
        &frame[IP_OFFSET + 12..IP_OFFSET + 20],
        "inner addresses are the pods'"
    );
}

#[test]
fn a_native_remote_block_without_a_kernel_route_is_no_route() {
    let mut h = Harness::new("native-noroute");
    seed_remote_block(&mut h, PoolIpipMode::Never, true);
    let frame = packet::udp_between(POD_IP, REMOTE_POD_IP, 64, b"nowhere");
    h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &frame,
        Direction::FromWorkload,
        Reason::DropNoRoute,
        TC_ACT_SHOT,
    );
}

/// Bigger than the path's MTU as the FIB reports it (the uplink's, 1400 here; the FIB helper
/// takes a route's `mtu` only when it is locked): with DF the pod gets an ICMP
/// "fragmentation needed" with that MTU (not "no route"); without, the host stack fragments it.
#[test]
fn a_native_packet_too_big_for_the_path_is_answered_with_its_mtu() {
    let mut h = Harness::new("native-mtu");
    add_kernel_route_to_remote_block();
    let status = Command::new("ip")
        .args(["link", "set", support::net::UPLINK_NAME, "mtu", "1400"])
        .status()
        .expect("run ip link set");
    assert!(status.success(), "ip link set mtu failed");
    seed_remote_block(&mut h, PoolIpipMode::Never, true);
    let fits = icmp::tcp_of_ip_len(REMOTE_POD_IP, 1400);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &fits,
        Direction::FromWorkload,
        Reason::ForwardedNative,
        TC_ACT_REDIRECT,
    );
    assert_forwarded_natively(&fits, &out.data_out);
    let big = icmp::tcp_of_ip_len(REMOTE_POD_IP, 1401);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &big,
        Direction::FromWorkload,
        Reason::IcmpFragNeeded,
        TC_ACT_REDIRECT,
    );
    icmp::assert_frag_needed(&big, &out.data_out, 1400);
    let big = icmp::with_df(big, false);
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &big,
        Direction::FromWorkload,
        Reason::PassFragment,
        TC_ACT_OK,
    );
    assert_eq!(out.data_out, big, "passed on as sent");
}

#[test]
fn host_traffic_to_a_native_block_leaves_the_uplink_unwrapped() {
    let mut h = Harness::new("native-host");
    let uplink = On::iface(h.net.uplink);
    let frame = packet::udp_between(HOST_IP, REMOTE_POD_IP, 64, b"from the host");

    seed_remote_block(&mut h, PoolIpipMode::Never, true);
    let out = h.expect(
        PROG_TO_UPLINK,
        uplink,
        &frame,
        Direction::ToUplink,
        Reason::PassHost,
        TC_ACT_OK,
    );
    assert_eq!(out.data_out, frame, "left as the kernel routed it");

    seed_remote_block(&mut h, PoolIpipMode::Always, false);
    let out = h.expect(
        PROG_TO_UPLINK,
        uplink,
        &frame,
        Direction::ToUplink,
        Reason::Encapsulated,
        TC_ACT_OK,
    );
    assert_eq!(out.data_out.len(), frame.len() + 20);
    assert_eq!(out.data_out[IP_OFFSET + 9], IPPROTO_IPIP);
}

/// A remote pod's plain packet to a local pod: the uplink judges the flow's first packet by the
/// pod's ingress policy and delivers it by redirect; the pod's reply matches that flow (its
/// egress policy is not consulted) and goes back natively. Neither direction passes the host
/// stack, whose conntrack would otherwise see half a flow and call it invalid.
#[test]
fn plain_ip_from_a_remote_pod_is_judged_by_the_pods_ingress_policy() {
    let mut h = Harness::new("native-ingress");
    add_kernel_route_to_remote_block();
    seed_remote_block(&mut h, PoolIpipMode::Never, true);
    let uplink = On::iface(h.net.uplink);
    let request = packet::tcp_segment(REMOTE_POD_IP, 40000, POD_IP, 80, 0x02);
    let reply = packet::tcp_segment(POD_IP, 80, REMOTE_POD_IP, 40000, 0x12);

    // Allowed by the seeded allow-all ingress; the egress slot denies (no slot), so the reply
    // can only pass as part of the flow.
    let allow_slot = h.allow_all_slot;
    h.set_endpoint(WORKLOAD_A, POD_IP, [allow_slot, NO_SLOT]);
    let out = h.expect(
        PROG_FROM_UPLINK,
        uplink,
        &request,
        Direction::FromUplink,
        Reason::ForwardedLocal,
        TC_ACT_REDIRECT,
    );
    assert_eq!(out.data_out.len(), request.len());
    assert_eq!(
        out.data_out[IP_OFFSET + 8],
        request[IP_OFFSET + 8] - 1,
        "TTL decremented"
    );
    let (key, _) = CtKey::for_packet(REMOTE_POD_IP, 40000, POD_IP, 80, 6);
    let entry = h.conntrack(&key).expect("the flow is tracked");
    assert_eq!(entry.flags & ct_flags::VIA_HOST, 0, "past the host stack");
    let out = h.expect(
        PROG_FROM_WORKLOAD,
        FROM_A,
        &reply,
        Direction::FromWorkload,
        Reason::ForwardedNative,
        TC_ACT_REDIRECT,
    );
    assert_forwarded_natively(&reply, &out.data_out);

    // A deny in the pod's ingress policy stops the next new flow at the uplink.
    h.flush_conntrack();
    let (group, allow) = support::harness::allow_all();
    let deny = Program {
        entries: vec![Entry {
            by: RuleRef::DefaultDeny {
                direction: PolicyDirection::Ingress,
            },
            step: Step::Deny,
            matcher: Some(Match::default()),
        }],
        default_deny: allow.default_deny,
    };
    assert_eq!(h.program_policy(&group, &deny), allow_slot, "same slot");
    h.expect(
        PROG_FROM_UPLINK,
        uplink,
        &request,
        Direction::FromUplink,
        Reason::DropPolicy,
        TC_ACT_SHOT,
    );
    assert!(h.conntrack(&key).is_none(), "a denied flow is not tracked");
}
