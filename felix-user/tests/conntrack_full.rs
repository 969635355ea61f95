//! A full conntrack table and conntrack maps resized across a restart, on the real programs
//! with BPF_PROG_TEST_RUN. Needs root and bpffs; built with `--features privileged-tests`.
#![cfg(feature = "privileged-tests")]

mod support;

use felix_common::{CtKey, Direction, Reason, conntrack::tcp_flags::SYN, maps};
use felix_user::{
    EBPF_OBJECT, PROG_FROM_WORKLOAD,
    dataplane::loader::{Dataplane, MapSizes},
    dataplane::resize,
};

use support::{
    harness::{Harness, On, TC_ACT_REDIRECT, WORKLOAD_A},
    packet::{self, PEER_IP, POD_IP},
};

const FROM_A: On = On::iface(WORKLOAD_A);

fn syn(sport: u16) -> Vec<u8> {
    packet::tcp_segment(POD_IP, sport, PEER_IP, 80, SYN)
}

fn ct_key(sport: u16) -> CtKey {
    CtKey::for_packet(POD_IP, sport, PEER_IP, 80, 6).0
}

fn ct_entries(h: &mut Harness) -> usize {
    h.dataplane().conntrack().expect("conntrack").keys().count()
}

#[test]
fn flows_beyond_a_full_table_still_pass_and_are_counted() {
    const CAPACITY: u32 = 4;
    const FLOWS: u16 = 10;
    let sizes = MapSizes {
        conntrack: CAPACITY,
        ..MapSizes::default()
    };
    let mut h = Harness::with_sizes("ct-full", &sizes);
    for sport in 0..FLOWS {
        let out = h.run(PROG_FROM_WORKLOAD, FROM_A, &syn(40000 + sport));
        assert_eq!(out.verdict, TC_ACT_REDIRECT, "flow {sport} is delivered");
    }
    assert_eq!(ct_entries(&mut h), CAPACITY as usize, "the table is full");
    for sport in 0..FLOWS {
        assert_eq!(
            h.conntrack(&ct_key(40000 + sport)).is_some(),
            u32::from(sport) < CAPACITY,
            "flow {sport}: the first flows keep their entries, no eviction"
        );
    }
    let ct_full = h
        .counters(0)
        .get(&(Direction::FromWorkload as u16, Reason::CtFull as u16))
        .map_or(0, |c| c.packets);
    assert_eq!(ct_full, u64::from(FLOWS) - u64::from(CAPACITY));
    let delivered = h
        .counters(WORKLOAD_A)
        .get(&(
            Direction::FromWorkload as u16,
            Reason::ForwardedLocal as u16,
        ))
        .map_or(0, |c| c.packets);
    assert_eq!(
        delivered,
        u64::from(FLOWS),
        "every packet kept its own verdict"
    );
    // A tracked flow's next packet is a conntrack hit and counts no ct_full.
    h.run(PROG_FROM_WORKLOAD, FROM_A, &syn(40000));
    let again = h
        .counters(0)
        .get(&(Direction::FromWorkload as u16, Reason::CtFull as u16))
        .map_or(0, |c| c.packets);
    assert_eq!(again, ct_full);
}

#[test]
fn a_restart_with_another_size_keeps_every_flow() {
    let small = MapSizes {
        conntrack: 8,
        routes: 512,
        ..MapSizes::default()
    };
    let mut h = Harness::with_sizes("ct-resize", &small);
    for sport in 0..5 {
        h.run(PROG_FROM_WORKLOAD, FROM_A, &syn(41000 + sport));
    }
    let routes_before = h.dataplane().routes().expect("routes").keys().count();
    assert!(routes_before > 0, "the harness seeds routes");
    let paths = h.paths();

    let larger = MapSizes {
        conntrack: 64,
        routes: 1024,
        ..MapSizes::default()
    };
    let mut next = Dataplane::load_sized(EBPF_OBJECT, &paths, &larger).expect("reload");
    let size = |name| {
        aya::maps::MapInfo::from_pin(paths.map(name))
            .expect("pinned")
            .max_entries()
    };
    assert_eq!(size(maps::CONNTRACK), 64);
    assert_eq!(size(maps::ROUTES), 1024);
    let ct = next.conntrack().expect("conntrack");
    for sport in 0..5 {
        assert!(
            ct.get(&ct_key(41000 + sport), 0).is_ok(),
            "flow {sport} was copied"
        );
    }
    assert_eq!(next.routes().expect("routes").keys().count(), routes_before);
    let aside = resize::aside_path(&paths, maps::CONNTRACK);
    assert!(
        aside.exists(),
        "the old map stays pinned until the programs are attached"
    );

    // A flow the old programs open meanwhile is copied when the swap finishes.
    h.run(PROG_FROM_WORKLOAD, FROM_A, &syn(42000));
    next.finish_resize();
    assert!(!aside.exists(), "the old pin is gone");
    assert!(next.conntrack().expect("ct").get(&ct_key(42000), 0).is_ok());

    // The same size again adopts the pinned map as it is.
    drop(next);
    let mut same = Dataplane::load_sized(EBPF_OBJECT, &paths, &larger).expect("reload");
    assert!(!aside.exists(), "nothing to replace");
    assert_eq!(same.conntrack().expect("ct").keys().count(), 6);
}
