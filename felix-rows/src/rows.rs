//! One row type per dump. Field names are the JSON keys; renaming one changes `--json`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// One line of `felix bpf counters dump`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CounterRow {
    pub ifindex: u32,
    pub interface: String,
    pub direction: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

/// One line of `felix bpf ifaces dump`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IfaceRow {
    pub ifindex: u32,
    pub name: String,
    pub role: String,
    pub ingress: String,
    pub egress: String,
    pub xdp: String,
}

/// One line of `felix bpf endpoints dump`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointRow {
    pub ifindex: u32,
    pub interface: String,
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
}

/// One line of `felix bpf routes dump`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteRow {
    pub cidr: String,
    pub kind: String,
    pub ifindex: u32,
    pub interface: Option<String>,
    pub next_hop: Option<Ipv4Addr>,
    /// For a remote block: `ipip` or `native`.
    pub encap: Option<String>,
    /// For a remote block: its pool's `ipipMode` (`Always`, `Never`, `CrossSubnet`; `none`
    /// outside every pool).
    pub ipip_mode: Option<String>,
}

/// One line of `felix bpf conntrack dump`: the flow as its initiator sent it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConntrackRow {
    pub proto: String,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    pub state: String,
    pub packets_forward: u64,
    pub packets_reverse: u64,
    pub age_s: f64,
    pub idle_s: f64,
    /// How the flow travels: `via_host` (through the host stack both ways, which may NAT it),
    /// `unconfirmed` (opened by a pod before the stack's NAT, not yet judged after it).
    #[serde(default)]
    pub flags: Vec<String>,
    /// The ifindex of the local endpoint the entry is charged to (its share of the table);
    /// 0: none.
    #[serde(default)]
    pub owner_ifindex: u32,
}

/// One line of `felix bpf nat-origins dump`: a pod's first packet in flight through the host
/// stack, and the flow it opened before NAT.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NatOriginRow {
    /// The `cali*` interface the packet came from.
    pub ifindex: u32,
    pub ip_id: u16,
    pub proto: String,
    /// The flow as the pod sent it.
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// One line of `felix bpf xdp-deny dump`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DenyRow {
    pub cidr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conntrack_row_reads_back_from_its_json() {
        let json = r#"{"proto":"tcp","src":"192.168.2.1","sport":55134,"dst":"192.168.3.1",
            "dport":5201,"state":"established","packets_forward":3,"packets_reverse":2,
            "age_s":1.5,"idle_s":0.2}"#;
        let row: ConntrackRow = serde_json::from_str(json).expect("parse");
        assert_eq!(
            (row.sport, row.dport, row.state.as_str()),
            (55134, 5201, "established")
        );
        let back = serde_json::to_value(&row).expect("serialize");
        assert_eq!(back["dst"], "192.168.3.1");
    }
}
