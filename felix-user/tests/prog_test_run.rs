//! Tier 2: the real programs, verified by the kernel, run with BPF_PROG_TEST_RUN on crafted
//! packets. Needs root and bpffs; built only with `--features privileged-tests` (`cargo xtask
//! test` does that).
#![cfg(feature = "privileged-tests")]

mod support;

use felix_common::{Direction, Reason};
use felix_user::{PROG_FROM_WORKLOAD, PROG_TO_WORKLOAD};
use support::{
    harness::{Harness, TC_ACT_OK, TC_ACT_SHOT},
    packet,
};

const BOTH: [(&str, Direction); 2] = [
    (PROG_FROM_WORKLOAD, Direction::FromWorkload),
    (PROG_TO_WORKLOAD, Direction::ToWorkload),
];

#[test]
fn valid_tcp_is_allowed_unchanged_and_counted() {
    let mut harness = Harness::new("tcp");
    let frame = packet::tcp(b"hello");
    for (program, direction) in BOTH {
        let out = harness.expect(program, &frame, direction, Reason::Allowed, TC_ACT_OK);
        assert_eq!(out.data_out, frame, "{program} must not modify the packet");
    }
}

#[test]
fn udp_is_allowed() {
    let mut harness = Harness::new("udp");
    for (program, direction) in BOTH {
        harness.expect(
            program,
            &packet::udp(b"query"),
            direction,
            Reason::Allowed,
            TC_ACT_OK,
        );
    }
}

#[test]
fn icmp_echo_is_allowed() {
    let mut harness = Harness::new("icmp");
    for (program, direction) in BOTH {
        harness.expect(
            program,
            &packet::icmp_echo(),
            direction,
            Reason::Allowed,
            TC_ACT_OK,
        );
    }
}

#[test]
fn arp_passes() {
    let mut harness = Harness::new("arp");
    for (program, direction) in BOTH {
        harness.expect(
            program,
            &packet::arp_request(),
            direction,
            Reason::PassArp,
            TC_ACT_OK,
        );
    }
}

#[test]
fn frame_too_short_for_its_ip_header_is_dropped() {
    let mut harness = Harness::new("short");
    // IHL 15 announces 60 bytes of IPv4 header; the frame holds the 20-byte header and 8 bytes
    // of ICMP. (BPF_PROG_TEST_RUN itself refuses IPv4 frames shorter than 20 bytes of IP
    // header with EINVAL, so this is the shortest header truncation it lets through.)
    let frame = packet::truncated(
        packet::with_ihl(packet::icmp_echo(), 15),
        packet::IP_OFFSET + 28,
    );
    let frame = packet::with_total_len(frame, 28);
    for (program, direction) in BOTH {
        harness.expect(
            program,
            &frame,
            direction,
            Reason::DropTooShort,
            TC_ACT_SHOT,
        );
    }
}

#[test]
fn kernel_refuses_test_frames_shorter_than_an_ipv4_header() {
    // Documents the limit above: if a kernel starts accepting these, the test above should
    // switch to a truly truncated header.
    let mut harness = Harness::new("refused");
    let frame = packet::truncated(packet::udp(b""), packet::IP_OFFSET + 10);
    assert!(harness.try_run(PROG_FROM_WORKLOAD, &frame).is_err());
}

#[test]
fn bad_ihl_is_dropped() {
    let mut harness = Harness::new("ihl");
    for ihl in [0, 3, 4] {
        let frame = packet::with_ihl(packet::tcp(b"x"), ihl);
        for (program, direction) in BOTH {
            harness.expect(
                program,
                &frame,
                direction,
                Reason::DropBadHeader,
                TC_ACT_SHOT,
            );
        }
    }
}

#[test]
fn total_length_below_the_header_length_is_bad() {
    let mut harness = Harness::new("totlen-small");
    let frame = packet::with_total_len(packet::icmp_echo(), 19);
    harness.expect(
        PROG_FROM_WORKLOAD,
        &frame,
        Direction::FromWorkload,
        Reason::DropBadHeader,
        TC_ACT_SHOT,
    );
}

#[test]
fn wrong_ip_version_is_dropped() {
    let mut harness = Harness::new("version");
    let frame = packet::with_version(packet::udp(b"v"), 6);
    harness.expect(
        PROG_FROM_WORKLOAD,
        &frame,
        Direction::FromWorkload,
        Reason::DropBadHeader,
        TC_ACT_SHOT,
    );
}

#[test]
fn total_length_beyond_the_frame_is_too_short() {
    let mut harness = Harness::new("totlen");
    let frame = packet::tcp(b"payload");
    let claimed = (frame.len() - packet::IP_OFFSET + 100) as u16;
    let frame = packet::with_total_len(frame, claimed);
    harness.expect(
        PROG_FROM_WORKLOAD,
        &frame,
        Direction::FromWorkload,
        Reason::DropTooShort,
        TC_ACT_SHOT,
    );
}

#[test]
fn truncated_l4_headers_are_too_short() {
    let mut harness = Harness::new("l4");
    // IP header intact, L4 header cut after 4 bytes; total length adjusted to match.
    for frame in [packet::tcp(b""), packet::udp(b""), packet::icmp_echo()] {
        let cut = packet::IP_OFFSET + 20 + 4;
        let frame = packet::with_total_len(packet::truncated(frame, cut), 24);
        harness.expect(
            PROG_TO_WORKLOAD,
            &frame,
            Direction::ToWorkload,
            Reason::DropTooShort,
            TC_ACT_SHOT,
        );
    }
}

#[test]
fn non_ipv4_ethertype_is_dropped() {
    let mut harness = Harness::new("ipv6");
    for (program, direction) in BOTH {
        harness.expect(
            program,
            &packet::ipv6(),
            direction,
            Reason::DropUnsupportedL3,
            TC_ACT_SHOT,
        );
    }
}

#[test]
fn counters_accumulate_across_packets() {
    let mut harness = Harness::new("accumulate");
    let frame = packet::udp(b"0123456789");
    for _ in 0..5 {
        harness.run(PROG_FROM_WORKLOAD, &frame);
    }
    let counters = harness.counters();
    let allowed = counters[&(Direction::FromWorkload as u16, Reason::Allowed as u16)];
    assert_eq!(allowed.packets, 5);
    assert_eq!(allowed.bytes, 5 * frame.len() as u64);
}
