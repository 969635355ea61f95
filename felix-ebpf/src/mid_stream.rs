//! Judging a packet whose flow has no entry. A flow's first packet is judged as today, by the
//! policy of the side it is sent from and to. A mid-stream TCP packet (anything but a SYN
//! without ACK) belongs to a flow opened before its entry was lost (evicted, or felix's table
//! flushed): it may be the initiator's packet or the responder's reply, so it passes when policy
//! allows the flow either way - as sent, or reversed (its receiver as the initiator, judged on
//! the packet its receiver would send) - and its entry is opened again with that initiator and
//! the state the flow is in ([`conntrack::resume`]). Only the deciding orientation's verdicts
//! are counted and traced; a packet neither allows is denied (and traced) as sent.

use felix_common::{
    EndpointInfo, Reason,
    conntrack::{proto, tcp_opens_flow},
    policy::SLOT_EGRESS,
};

use crate::{
    conntrack::{self, Initiator},
    parse::Ipv4Summary,
    policy::{self, At},
};

/// One policy judgement: `endpoint`'s policy in direction `slot` (`SLOT_INGRESS` or
/// `SLOT_EGRESS`); the peer is the packet's destination for egress, its source for ingress.
#[derive(Clone, Copy)]
pub struct Check<'a> {
    pub endpoint: &'a EndpointInfo,
    pub slot: usize,
}

/// The judgements of one orientation of a flow, in order (an unused one is `None`).
pub type Checks<'a> = [Option<Check<'a>>; 2];

impl<'a> Check<'a> {
    #[inline(always)]
    pub fn new(endpoint: &'a EndpointInfo, slot: usize) -> Self {
        Self { endpoint, slot }
    }

    #[inline(always)]
    fn remote(&self, packet: &Ipv4Summary) -> [u8; 4] {
        if self.slot == SLOT_EGRESS {
            packet.daddr
        } else {
            packet.saddr
        }
    }

    #[inline(always)]
    fn allows(&self, packet: &Ipv4Summary) -> bool {
        policy::allows(self.endpoint, self.slot, self.remote(packet), packet)
    }

    #[inline(always)]
    fn check(&self, at: At, packet: &Ipv4Summary) -> Result<(), Reason> {
        policy::check(at, self.endpoint, self.slot, self.remote(packet), packet)
    }
}

/// Whether `packet` is TCP that cannot open a flow (anything but a SYN without ACK).
#[inline(always)]
pub fn is_mid_stream(packet: &Ipv4Summary) -> bool {
    packet.proto == proto::TCP && !tcp_opens_flow(packet.tcp_flags)
}

/// `packet` as its flow's other side would send it.
#[inline(always)]
fn reversed(packet: &Ipv4Summary) -> Ipv4Summary {
    Ipv4Summary {
        saddr: packet.daddr,
        daddr: packet.saddr,
        sport: packet.dport,
        dport: packet.sport,
        ..*packet
    }
}

/// Judges by every check in `checks`, counting and tracing each verdict (the first denial
/// ends it).
#[inline(always)]
fn check_all(at: At, checks: &Checks, packet: &Ipv4Summary) -> Result<(), Reason> {
    if let Some(check) = checks[0] {
        check.check(at, packet)?;
    }
    if let Some(check) = checks[1] {
        check.check(at, packet)?;
    }
    Ok(())
}

/// Whether every check in `checks` allows `packet` (nothing counted or traced).
#[inline(always)]
fn allows_all(checks: &Checks, packet: &Ipv4Summary) -> bool {
    checks[0].is_none_or(|check| check.allows(packet))
        && checks[1].is_none_or(|check| check.allows(packet))
}

/// Judges `packet`, which has no flow: by the `forward` checks (the sender as initiator); a
/// mid-stream TCP packet that these deny, by the `reverse` checks on the reversed packet (the
/// receiver as initiator). `Ok` names the initiator of the allowed orientation.
#[inline(always)]
pub fn judge(
    at: At,
    packet: &Ipv4Summary,
    forward: &Checks,
    reverse: &Checks,
) -> Result<Initiator, Reason> {
    if is_mid_stream(packet) && !allows_all(forward, packet) {
        let reply = reversed(packet);
        if allows_all(reverse, &reply) {
            check_all(at, reverse, &reply)?;
            return Ok(Initiator::Receiver);
        }
    }
    check_all(at, forward, packet).map(|()| Initiator::Sender)
}

/// Whether `packet` is a mid-stream TCP packet that the `reverse` checks allow as a reply (its
/// receiver as initiator); the allowing verdicts are counted and traced. For a packet whose
/// own orientation is judged later (after the host stack's NAT).
#[inline(always)]
pub fn allowed_as_reply(at: At, packet: &Ipv4Summary, reverse: &Checks) -> bool {
    if !is_mid_stream(packet) {
        return false;
    }
    let reply = reversed(packet);
    allows_all(reverse, &reply) && check_all(at, reverse, &reply).is_ok()
}

/// Opens the flow of `packet` ([`conntrack::create`]) after [`judge`] allowed it; a mid-stream
/// packet's entry then gets `initiator` and the flow's state ([`conntrack::resume`]).
#[inline(always)]
pub fn track(
    packet: &Ipv4Summary,
    flags: u8,
    owner: u32,
    initiator: Initiator,
) -> Result<(), Reason> {
    conntrack::create(packet, flags, owner)?;
    if is_mid_stream(packet) {
        conntrack::resume(packet, initiator);
    }
    Ok(())
}
