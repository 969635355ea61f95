//! The in-kernel conntrack cleaner (`felix_ct_clean`) on tables filled from user space, and
//! `create`'s per-endpoint share, on the real programs with BPF_PROG_TEST_RUN. Needs root and
//! bpffs; built with `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod support;

use std::collections::BTreeMap;

use aya::maps::{HashMap, MapData};
use felix_common::{
    CtKey, CtState, CtValue, Direction, Reason,
    conntrack::{
        proto,
        tcp_flags::{ACK, RST, SYN},
        timeouts,
    },
    ct_clean::{CtCleanRequest, CtCleanStats, CtEndpointCount, UNANSWERED_STALE_NS},
    maps,
};
use felix_user::{PROG_CT_CLEAN, PROG_FROM_WORKLOAD, dataplane::ct_cleaner};

use support::{
    harness::{Harness, On, TC_ACT_REDIRECT, TC_ACT_SHOT, WORKLOAD_A},
    packet::{self, PEER_IP, POD_IP},
};

const SECOND: u64 = 1_000_000_000;
/// The clock the passes of the table tests judge by.
const NOW: u64 = 100_000 * SECOND;
const POD_B_OWNER: u32 = 7;

fn key(sport: u16, proto: u8) -> CtKey {
    CtKey::for_packet(POD_IP, sport, PEER_IP, 80, proto).0
}

/// An entry of `state` idle for `idle_ns` at [`NOW`], charged to `owner`.
fn entry(state: CtState, idle_ns: u64, answered: bool, owner: u32) -> CtValue {
    CtValue {
        created_ns: NOW - idle_ns - SECOND,
        last_seen_ns: NOW - idle_ns,
        packets_a_to_b: 1,
        packets_b_to_a: u64::from(answered),
        state: state as u8,
        owner_ifindex: owner,
        ..CtValue::default()
    }
}

fn fill(h: &mut Harness, entries: &[(CtKey, CtValue)]) {
    let mut ct = h.dataplane().conntrack().expect("conntrack");
    for (key, value) in entries {
        ct.insert(key, value, 0).expect("insert entry");
    }
}

fn pass(h: &mut Harness, now_ns: u64, endpoint_max: u32, evict: bool) -> CtCleanStats {
    let request = CtCleanRequest {
        now_ns,
        endpoint_max,
        evict: u32::from(evict),
    };
    ct_cleaner::run_pass(h.dataplane(), &request).expect("cleaner pass")
}

fn endpoint_counts(h: &mut Harness) -> BTreeMap<u32, u64> {
    let map: HashMap<&mut MapData, u32, CtEndpointCount> =
        HashMap::try_from(h.dataplane().map(maps::CT_ENDPOINTS).expect("map")).expect("hash");
    map.iter()
        .map(|e| e.expect("entry"))
        .map(|(ifindex, count)| (ifindex, count.charged()))
        .collect()
}

fn live_keys(h: &mut Harness) -> Vec<CtKey> {
    let ct = h.dataplane().conntrack().expect("conntrack");
    let mut keys: Vec<CtKey> = ct.keys().map(|k| k.expect("key")).collect();
    keys.sort_by_key(|k| (k.proto, k.port_a, k.port_b));
    keys
}

/// The cleaner's verification stays off the start: loading the dataplane leaves it for the
/// first pass, which loads it.
#[test]
fn the_cleaner_program_is_loaded_by_its_first_pass() {
    let mut h = Harness::new("ct-clean-lazy");
    let loaded = |h: &mut Harness| {
        h.dataplane()
            .classifier(PROG_CT_CLEAN)
            .expect("cleaner in the object")
            .fd()
            .is_ok()
    };
    assert!(!loaded(&mut h), "not verified at load");
    let stats = pass(&mut h, NOW, 0, false);
    assert_eq!(stats.scanned, 0, "an empty table");
    assert!(loaded(&mut h), "loaded by the first pass");
}

#[test]
fn a_pass_removes_expired_entries_and_under_pressure_closing_and_stale_ones() {
    let mut h = Harness::new("ct-clean");
    let established = [key(1, proto::TCP), key(2, proto::TCP)];
    let fresh_syn = key(6, proto::TCP);
    let udp_both_ways = key(8, proto::UDP);
    let table = [
        (
            established[0],
            entry(CtState::Established, 0, true, WORKLOAD_A),
        ),
        // Idle longer than any state but established may be; established is kept.
        (
            established[1],
            entry(
                CtState::Established,
                timeouts::TCP_RESET_NS * 2,
                true,
                WORKLOAD_A,
            ),
        ),
        (
            key(3, proto::TCP),
            entry(
                CtState::Established,
                timeouts::TCP_ESTABLISHED_NS + SECOND,
                true,
                WORKLOAD_A,
            ),
        ),
        (
            key(4, proto::TCP),
            entry(CtState::FinsSeen, SECOND, true, POD_B_OWNER),
        ),
        (
            key(5, proto::TCP),
            entry(CtState::Reset, SECOND, true, POD_B_OWNER),
        ),
        (
            fresh_syn,
            entry(CtState::SynSent, SECOND, false, POD_B_OWNER),
        ),
        (
            key(7, proto::TCP),
            entry(CtState::SynSent, UNANSWERED_STALE_NS, false, POD_B_OWNER),
        ),
        (
            key(7, proto::UDP),
            entry(CtState::Active, 2 * UNANSWERED_STALE_NS, false, 0),
        ),
        (
            udp_both_ways,
            entry(CtState::Active, 2 * UNANSWERED_STALE_NS, true, 0),
        ),
    ];
    fill(&mut h, &table);

    let calm = pass(&mut h, NOW, 0, false);
    assert_eq!(
        calm,
        CtCleanStats {
            now_ns: NOW,
            scanned: 9,
            live: 8,
            removed_expired: 1,
            endpoints: 2,
            ..CtCleanStats::default()
        }
    );
    assert_eq!(
        endpoint_counts(&mut h),
        BTreeMap::from([(WORKLOAD_A, 2), (POD_B_OWNER, 2)]),
        "each endpoint's live entries but the closing ones"
    );

    let pressed = pass(&mut h, NOW, 0, true);
    assert_eq!(
        (
            pressed.removed_expired,
            pressed.removed_closing,
            pressed.removed_unanswered
        ),
        (0, 2, 2)
    );
    assert_eq!((pressed.scanned, pressed.live), (8, 4));
    let mut kept = vec![established[0], established[1], fresh_syn, udp_both_ways];
    kept.sort_by_key(|k| (k.proto, k.port_a, k.port_b));
    assert_eq!(
        live_keys(&mut h),
        kept,
        "established and answered flows stay"
    );
    assert_eq!(
        endpoint_counts(&mut h),
        BTreeMap::from([(WORKLOAD_A, 2), (POD_B_OWNER, 1)])
    );

    let state = ct_cleaner::state(h.dataplane()).expect("state");
    assert_eq!(state.passes, 2);
    assert_eq!(
        (
            state.removed_expired,
            state.removed_closing,
            state.removed_unanswered
        ),
        (1, 2, 2),
        "totals over both passes"
    );
    assert_eq!(state.last, pressed);

    // Nothing charged any more: the endpoint's count is forgotten.
    h.flush_conntrack();
    let empty = pass(&mut h, NOW, 0, false);
    assert_eq!((empty.scanned, empty.live, empty.endpoints), (0, 0, 0));
    assert!(endpoint_counts(&mut h).is_empty());
}

#[test]
fn an_endpoint_near_its_share_loses_its_own_unanswered_entries_only() {
    let mut h = Harness::new("ct-clean-share");
    let mut table = Vec::new();
    for sport in 0..9 {
        table.push((
            key(100 + sport, proto::TCP),
            entry(CtState::SynSent, UNANSWERED_STALE_NS, false, WORKLOAD_A),
        ));
    }
    table.push((
        key(200, proto::TCP),
        entry(CtState::Established, 0, true, WORKLOAD_A),
    ));
    for sport in 0..3 {
        table.push((
            key(300 + sport, proto::TCP),
            entry(CtState::SynSent, UNANSWERED_STALE_NS, false, POD_B_OWNER),
        ));
    }
    // Closing flows are not charged: they do not bring A near its share.
    for sport in 0..20 {
        table.push((
            key(400 + sport, proto::TCP),
            entry(CtState::FinsSeen, SECOND, true, WORKLOAD_A),
        ));
    }
    fill(&mut h, &table);
    // The first pass counts (10 for A, 3 for B); with a share of 10, A is at it.
    let counted = pass(&mut h, NOW, 10, false);
    assert_eq!((counted.live, counted.removed_unanswered), (33, 0));
    assert_eq!(
        endpoint_counts(&mut h),
        BTreeMap::from([(WORKLOAD_A, 10), (POD_B_OWNER, 3)])
    );
    let second = pass(&mut h, NOW, 10, false);
    assert_eq!(second.removed_unanswered, 9, "A's stale half-open flows");
    assert_eq!(second.removed_closing, 20, "and A's closing ones");
    assert_eq!(second.live, 4);
    assert_eq!(
        endpoint_counts(&mut h),
        BTreeMap::from([(WORKLOAD_A, 1), (POD_B_OWNER, 3)]),
        "B, far from its share, keeps its flows"
    );
}

fn syn(src: [u8; 4], sport: u16, dst: [u8; 4]) -> Vec<u8> {
    packet::tcp_segment(src, sport, dst, 80, SYN)
}

fn reason_count(h: &mut Harness, ifindex: u32, reason: Reason) -> u64 {
    h.counters(ifindex)
        .get(&(Direction::FromWorkload as u16, reason as u16))
        .map_or(0, |c| c.packets)
}

#[test]
fn create_refuses_a_new_flow_of_an_endpoint_at_its_share() {
    const SHARE: u32 = 3;
    let mut h = Harness::new("ct-share");
    let from_a = On::iface(WORKLOAD_A);
    let from_b = On::iface(h.net.workload_b);
    // A pass sets the share create enforces (the table is empty).
    pass(&mut h, 0, SHARE, false);
    for sport in 0..SHARE as u16 {
        let out = h.run(
            PROG_FROM_WORKLOAD,
            from_a,
            &syn(POD_IP, 40000 + sport, PEER_IP),
        );
        assert_eq!(
            out.verdict, TC_ACT_REDIRECT,
            "flow {sport} within the share"
        );
    }
    assert_eq!(
        endpoint_counts(&mut h),
        BTreeMap::from([(WORKLOAD_A, 3)]),
        "create counts"
    );
    let over = h.run(PROG_FROM_WORKLOAD, from_a, &syn(POD_IP, 40010, PEER_IP));
    assert_eq!(
        over.verdict, TC_ACT_SHOT,
        "a flow beyond the share is dropped"
    );
    assert_eq!(
        reason_count(&mut h, WORKLOAD_A, Reason::DropCtEndpointShare),
        1
    );
    assert!(
        h.conntrack(&key(40010, proto::TCP)).is_none(),
        "and opens no entry"
    );

    // The pod's open flows keep working.
    let ack = packet::tcp_segment(POD_IP, 40000, PEER_IP, 80, ACK);
    assert_eq!(
        h.run(PROG_FROM_WORKLOAD, from_a, &ack).verdict,
        TC_ACT_REDIRECT
    );
    // A flow that closes no longer counts: A may open another at once, without a pass.
    let rst = packet::tcp_segment(POD_IP, 40000, PEER_IP, 80, RST | ACK);
    assert_eq!(
        h.run(PROG_FROM_WORKLOAD, from_a, &rst).verdict,
        TC_ACT_REDIRECT
    );
    assert_eq!(endpoint_counts(&mut h), BTreeMap::from([(WORKLOAD_A, 2)]));
    let after_close = h.run(PROG_FROM_WORKLOAD, from_a, &syn(POD_IP, 40011, PEER_IP));
    assert_eq!(
        after_close.verdict, TC_ACT_REDIRECT,
        "the closed flow freed its place"
    );
    // Another pod opens flows as before, charged to itself.
    let b_flow = h.run(PROG_FROM_WORKLOAD, from_b, &syn(PEER_IP, 41000, POD_IP));
    assert_eq!(b_flow.verdict, TC_ACT_REDIRECT);
    let b = h.net.workload_b;
    assert_eq!(
        endpoint_counts(&mut h),
        BTreeMap::from([(WORKLOAD_A, 3), (b, 1)])
    );
    assert_eq!(reason_count(&mut h, b, Reason::DropCtEndpointShare), 0);

    // Once A's flows are gone (here: removed), a pass recounts and A may open flows again.
    {
        let mut ct = h.dataplane().conntrack().expect("conntrack");
        for sport in (0..SHARE as u16).chain([11]) {
            ct.remove(&key(40000 + sport, proto::TCP)).expect("remove");
        }
    }
    pass(&mut h, 0, SHARE, false);
    assert_eq!(endpoint_counts(&mut h), BTreeMap::from([(b, 1)]));
    let again = h.run(PROG_FROM_WORKLOAD, from_a, &syn(POD_IP, 40020, PEER_IP));
    assert_eq!(again.verdict, TC_ACT_REDIRECT);
}
