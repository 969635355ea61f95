//! Failsafe ports (Calico's `FailsafeInboundHostPorts` and `FailsafeOutboundHostPorts`): parsed
//! from Calico's format and written to the failsafe map, which the uplink's XDP program
//! consults before dropping a deny-listed source. Packets to an inbound failsafe port of the
//! host, and replies from an outbound failsafe port (etcd, DNS, BGP the host talks to), always
//! reach the host, so that no deny list can cut it off.

use std::{collections::BTreeSet, fmt, str::FromStr};

use aya::maps::{HashMap, Map, MapData, MapError};
use felix_common::{
    failsafe::{FAILSAFE_INBOUND, FAILSAFE_OUTBOUND, FailsafeKey},
    maps,
};

use crate::dataplane::{loader::Dataplane, maps::InspectError, pins::NodePaths};

/// Calico's default `FailsafeInboundHostPorts`.
pub const DEFAULT_INBOUND: &str =
    "tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667";
/// Calico's default `FailsafeOutboundHostPorts`.
pub const DEFAULT_OUTBOUND: &str =
    "udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667";

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

/// Errors parsing or programming failsafe ports.
#[derive(Debug, thiserror::Error)]
pub enum FailsafeError {
    /// An entry of a port list is not `[proto:][cidr:]port`.
    #[error("failsafe port {entry:?}: {reason} (example: tcp:22,udp:68 or none)")]
    Parse { entry: String, reason: String },
    /// The failsafe map could not be opened, read or written.
    #[error("failsafe map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    /// The pinned failsafe map could not be opened.
    #[error(transparent)]
    Inspect(#[from] InspectError),
}

/// One failsafe port: a protocol (TCP, UDP or SCTP) and a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailsafePort {
    /// IP protocol number.
    pub protocol: u8,
    /// The port.
    pub port: u16,
}

impl fmt::Display for FailsafePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", protocol_name(self.protocol), self.port)
    }
}

/// A list of failsafe ports in Calico's format: comma-separated `[proto:][cidr:]port` entries
/// (protocol `tcp` when left out), or `none`. Only the all-addresses CIDR `0.0.0.0/0` is
/// accepted: the map is keyed by protocol and port, so a narrower CIDR would widen silently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailsafePorts(pub Vec<FailsafePort>);

impl FromStr for FailsafePorts {
    type Err = FailsafeError;

    fn from_str(text: &str) -> Result<Self, FailsafeError> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("none") || trimmed.is_empty() || trimmed == "[]" {
            return Ok(Self(Vec::new()));
        }
        trimmed
            .split(',')
            .map(|entry| parse_entry(entry.trim()))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for FailsafePorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let entries: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&entries.join(","))
    }
}

fn parse_entry(entry: &str) -> Result<FailsafePort, FailsafeError> {
    let fail = |reason: &str| FailsafeError::Parse {
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = entry.split(':').collect();
    let (protocol, port) = match parts.as_slice() {
        [port] => ("tcp", *port),
        [protocol, port] => (*protocol, *port),
        [protocol, cidr, port] => {
            if cidr.trim() != "0.0.0.0/0" {
                return Err(fail(
                    "only the CIDR 0.0.0.0/0 is supported (failsafe ports apply to every source)",
                ));
            }
            (*protocol, *port)
        }
        _ => return Err(fail("expected [proto:][cidr:]port")),
    };
    let protocol = match protocol.trim().to_ascii_lowercase().as_str() {
        "tcp" => TCP,
        "udp" => UDP,
        "sctp" => SCTP,
        _ => return Err(fail("the protocol must be tcp, udp or sctp")),
    };
    let port = port
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| fail("the port must be a number from 1 to 65535"))?;
    Ok(FailsafePort { protocol, port })
}

fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        TCP => "tcp",
        UDP => "udp",
        SCTP => "sctp",
        _ => "other",
    }
}

/// The map keys for `inbound` and `outbound` ports.
pub fn keys(inbound: &[FailsafePort], outbound: &[FailsafePort]) -> BTreeSet<FailsafeKey> {
    let direction = |d: u8| move |p: &FailsafePort| FailsafeKey::new(d, p.protocol, p.port);
    inbound
        .iter()
        .map(direction(FAILSAFE_INBOUND))
        .chain(outbound.iter().map(direction(FAILSAFE_OUTBOUND)))
        .collect()
}

/// Makes `map` hold exactly the keys of `inbound` and `outbound` (adds the new ones first, then
/// removes the others, so a port on both lists is never absent). Returns (added, removed).
pub fn program<T: std::borrow::BorrowMut<MapData>>(
    map: &mut HashMap<T, FailsafeKey, u32>,
    inbound: &[FailsafePort],
    outbound: &[FailsafePort],
) -> Result<(usize, usize), FailsafeError> {
    let err = |source| FailsafeError::Map {
        name: maps::FAILSAFE,
        source,
    };
    let wanted = keys(inbound, outbound);
    let present: BTreeSet<FailsafeKey> = map.keys().filter_map(Result::ok).collect();
    let mut added = 0;
    for key in wanted.difference(&present) {
        map.insert(key, 1, 0).map_err(err)?;
        added += 1;
    }
    let mut removed = 0;
    for key in present.difference(&wanted) {
        map.remove(key).map_err(err)?;
        removed += 1;
    }
    Ok((added, removed))
}

/// Writes the failsafe ports into a loaded dataplane's map.
pub fn program_dataplane(
    dataplane: &mut Dataplane,
    inbound: &[FailsafePort],
    outbound: &[FailsafePort],
) -> Result<(usize, usize), FailsafeError> {
    let map = dataplane
        .ebpf_mut()
        .map_mut(maps::FAILSAFE)
        .ok_or(FailsafeError::Map {
            name: maps::FAILSAFE,
            source: MapError::InvalidName {
                name: maps::FAILSAFE.to_owned(),
            },
        })?;
    let mut map: HashMap<&mut MapData, FailsafeKey, u32> =
        HashMap::try_from(map).map_err(|source| FailsafeError::Map {
            name: maps::FAILSAFE,
            source,
        })?;
    program(&mut map, inbound, outbound)
}

/// One line of `felix bpf failsafe dump`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct FailsafeRow {
    /// `inbound` (to this host's port) or `outbound` (replies from a remote port).
    pub direction: &'static str,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
    /// The port.
    pub port: u16,
}

/// Reads the pinned failsafe map of a node.
pub fn read(paths: &NodePaths) -> Result<Vec<FailsafeRow>, FailsafeError> {
    let map: Map = crate::dataplane::maps::open(paths, maps::FAILSAFE)?;
    let map: HashMap<MapData, FailsafeKey, u32> =
        HashMap::try_from(map).map_err(|source| FailsafeError::Map {
            name: maps::FAILSAFE,
            source,
        })?;
    let mut rows: Vec<FailsafeRow> = map
        .keys()
        .filter_map(Result::ok)
        .map(|key| FailsafeRow {
            direction: if key.direction == FAILSAFE_OUTBOUND {
                "outbound"
            } else {
                "inbound"
            },
            protocol: protocol_name(key.proto),
            port: key.port,
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// The rows as a table.
pub fn table(rows: &[FailsafeRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.direction.into(), r.protocol.into(), r.port.to_string()])
        .collect();
    felix_rows::table(&["DIRECTION", "PROTO", "PORT"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(text: &str) -> Vec<FailsafePort> {
        text.parse::<FailsafePorts>().unwrap().0
    }

    #[test]
    fn calico_defaults_parse_to_nine_ports_each() {
        let inbound = ports(DEFAULT_INBOUND);
        assert_eq!(inbound.len(), 9);
        assert!(inbound.contains(&FailsafePort {
            protocol: TCP,
            port: 22
        }));
        assert!(inbound.contains(&FailsafePort {
            protocol: UDP,
            port: 68
        }));
        let outbound = ports(DEFAULT_OUTBOUND);
        assert!(outbound.contains(&FailsafePort {
            protocol: UDP,
            port: 53
        }));
        assert_eq!(FailsafePorts(inbound).to_string(), DEFAULT_INBOUND);
    }

    #[test]
    fn protocol_defaults_to_tcp_and_cidr_zero_is_accepted() {
        assert_eq!(
            ports("22, UDP:68 ,sctp:0.0.0.0/0:9000"),
            vec![
                FailsafePort {
                    protocol: TCP,
                    port: 22
                },
                FailsafePort {
                    protocol: UDP,
                    port: 68
                },
                FailsafePort {
                    protocol: SCTP,
                    port: 9000
                },
            ]
        );
    }

    #[test]
    fn none_and_empty_mean_no_port() {
        assert!(ports("none").is_empty());
        assert!(ports("").is_empty());
        assert_eq!(FailsafePorts::default().to_string(), "none");
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        for bad in [
            "tcp:0",
            "tcp:65536",
            "icmp:22",
            "tcp:x",
            "tcp:10.0.0.0/8:22",
            "a:b:c:d",
        ] {
            let error = bad.parse::<FailsafePorts>().unwrap_err().to_string();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn keys_carry_the_direction() {
        let keys = keys(&ports("tcp:22"), &ports("tcp:22,udp:53"));
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&FailsafeKey::new(FAILSAFE_INBOUND, TCP, 22)));
        assert!(keys.contains(&FailsafeKey::new(FAILSAFE_OUTBOUND, TCP, 22)));
        assert!(keys.contains(&FailsafeKey::new(FAILSAFE_OUTBOUND, UDP, 53)));
    }
}
