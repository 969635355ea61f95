//! Value types shared by several resources: CIDRs, ports, protocols, AS numbers, and the
//! case-insensitive string enums Calico uses (`Allow`, `Ingress`, `CrossSubnet`, ...).
//!
//! Each type checks its own value while deserializing, so a bad value is reported with the exact
//! field path by [`super::Resource`]'s decoder. Deserializing takes Calico's exact spelling only
//! (`Allow`, `TCP`: its validator refuses `allow` and `tcp`); [`std::str::FromStr`] is
//! case-insensitive, for command-line words.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::error::{FieldError, Reason};

/// A string enum that parses case-insensitively and serializes in Calico's spelling.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// Calico's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $(if s.eq_ignore_ascii_case($s) { return Ok($name::$v); })+
                Err(format!(
                    "unknown {} {:?} (expected one of: {})",
                    $what,
                    s,
                    [$($s),+].join(", ")
                ))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// Exact spelling only, as Calico's validator (`calicoctl` refuses `allow`).
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $(if s == $s { return Ok($name::$v); })+
                Err(serde::de::Error::custom(format!(
                    "unknown {} {:?} (expected one of: {}; names are case-sensitive)",
                    $what,
                    s,
                    [$($s),+].join(", ")
                )))
            }
        }
    };
}

string_enum!(
    /// What a rule does when it matches.
    Action, "action" {
        /// Accept the packet.
        Allow => "Allow",
        /// Drop the packet.
        Deny => "Deny",
        /// Skip the rest of this tier; go on with the next tier (or the profiles).
        Pass => "Pass",
        /// Log the packet and go on with the next rule.
        Log => "Log",
    }
);

string_enum!(
    /// A direction a policy applies to (`spec.types`).
    PolicyType, "policy type" {
        /// Traffic to the endpoint.
        Ingress => "Ingress",
        /// Traffic from the endpoint.
        Egress => "Egress",
    }
);

string_enum!(
    /// IPIP / VXLAN mode of an IP pool.
    EncapMode, "encapsulation mode" {
        /// Never encapsulate.
        Never => "Never",
        /// Always encapsulate to other nodes.
        Always => "Always",
        /// Encapsulate only across subnet boundaries.
        CrossSubnet => "CrossSubnet",
    }
);

/// A CIDR as Calico accepts it: `10.0.0.0/8`, or a bare IP taken as a /32 (/128 for IPv6).
/// Host bits are kept (`10.0.0.1/24` stays as written, as Node addresses need).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// The network (host bits cleared).
    pub fn network(self) -> IpNet {
        self.0.trunc()
    }
    /// Whether this is an IPv4 CIDR.
    pub fn is_ipv4(self) -> bool {
        matches!(self.0, IpNet::V4(_))
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(n) = t.parse::<IpNet>() {
            return Ok(Cidr(n));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip)));
        }
        Err(format!("{s:?} is not a CIDR or an IP address"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// An IP protocol: one of Calico's names or a number 1-255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    IcmpV6,
    Sctp,
    UdpLite,
    /// Any protocol by number (1-255).
    Number(u8),
}

impl Protocol {
    const NAMES: [(&'static str, Protocol); 6] = [
        ("TCP", Protocol::Tcp),
        ("UDP", Protocol::Udp),
        ("ICMP", Protocol::Icmp),
        ("ICMPv6", Protocol::IcmpV6),
        ("SCTP", Protocol::Sctp),
        ("UDPLite", Protocol::UdpLite),
    ];

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::IcmpV6 => 58,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::Number(n) => n,
        }
    }

    /// Whether `ports`/`notPorts` may be used with it (TCP, UDP, SCTP, as Calico requires).
    pub fn supports_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132)
    }

    /// Whether `icmp`/`notICMP` may be used with it (ICMP, ICMPv6).
    pub fn is_icmp(self) -> bool {
        matches!(self.number(), 1 | 58)
    }

    fn from_number(n: i128) -> Result<Self, String> {
        match u8::try_from(n) {
            Ok(n) if n >= 1 => Ok(Protocol::Number(n)),
            _ => Err(format!("protocol {n} is out of range 1-255")),
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((_, p)) = Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(*p);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Self::from_number(s.parse::<i128>().unwrap_or(i128::MAX));
        }
        Err(format!(
            "unknown protocol {s:?} (expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255)"
        ))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Number(n) => write!(f, "{n}"),
            p => {
                let name = Self::NAMES
                    .iter()
                    .find(|(_, q)| q == p)
                    .map_or("?", |(n, _)| n);
                f.write_str(name)
            }
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Number(n) => s.serialize_u8(*n),
            p => s.collect_str(p),
        }
    }
}

struct ProtocolVisitor;

impl de::Visitor<'_> for ProtocolVisitor {
    type Value = Protocol;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a protocol name or number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
        Protocol::from_number(v.into()).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
        Protocol::from_number(v.into()).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
        Protocol::from_calico_str(v).map_err(E::custom)
    }
}

impl Protocol {
    /// A protocol as Calico's validator accepts it in a resource: a name in Calico's exact
    /// spelling, or a number 1-255 (as a number or a string of digits).
    pub fn from_calico_str(s: &str) -> Result<Protocol, String> {
        if let Some((_, p)) = Self::NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(*p);
        }
        if Self::NAMES.iter().any(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Err(format!(
                "protocol {s:?} must be spelled TCP, UDP, ICMP, ICMPv6, SCTP or UDPLite (case-sensitive)"
            ));
        }
        s.parse()
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ProtocolVisitor)
    }
}

/// A port match: a number, a `"lo:hi"` range (inclusive), or a named port of the endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// One port, 1-65535.
    Single(u16),
    /// An inclusive range, 1 <= lo <= hi <= 65535.
    Range { lo: u16, hi: u16 },
    /// A named port, resolved against the endpoints' `ports`.
    Named(String),
}

impl Port {
    /// The numeric range it covers, or `None` for a named port.
    pub fn range(&self) -> Option<(u16, u16)> {
        match self {
            Port::Single(p) => Some((*p, *p)),
            Port::Range { lo, hi } => Some((*lo, *hi)),
            Port::Named(_) => None,
        }
    }

    fn number(n: i128) -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(format!("port {n} is out of range 1-65535")),
        }
    }

    fn number_str(s: &str) -> Result<u16, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} is not a port number"));
        }
        Self::number(s.parse::<i128>().unwrap_or(i128::MAX))
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some((lo, hi)) = t.split_once(':') {
            let lo = Self::number_str(lo.trim()).map_err(|e| format!("port range {s:?}: {e}"))?;
            let hi = Self::number_str(hi.trim()).map_err(|e| format!("port range {s:?}: {e}"))?;
            if lo > hi {
                return Err(format!(
                    "port range {s:?}: lower bound {lo} > upper bound {hi}"
                ));
            }
            return Ok(Port::Range { lo, hi });
        }
        if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() {
            return Self::number_str(t).map(Port::Single);
        }
        let valid = t.len() <= 128
            && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if valid {
            Ok(Port::Named(t.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a port, a \"lo:hi\" range or a port name"
            ))
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Single(p) => write!(f, "{p}"),
            Port::Range { lo, hi } => write!(f, "{lo}:{hi}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Single(p) => s.serialize_u16(*p),
            p => s.collect_str(p),
        }
    }
}

struct PortVisitor;

impl de::Visitor<'_> for PortVisitor {
    type Value = Port;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port number, a \"lo:hi\" range or a port name")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
        Port::number(v.into()).map(Port::Single).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
        Port::number(v.into()).map(Port::Single).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PortVisitor)
    }
}

/// A BGP AS number: a number, or a string holding one (`"64512"`) or the asdot form (`"1.10"`).
/// Serialized as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AsNumber(pub u32);

impl FromStr for AsNumber {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an AS number");
        if let Some((hi, lo)) = s.split_once('.') {
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            return Ok(AsNumber((u32::from(hi) << 16) | u32::from(lo)));
        }
        s.parse().map(AsNumber).map_err(|_| bad())
    }
}

struct AsVisitor;

impl de::Visitor<'_> for AsVisitor {
    type Value = AsNumber;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AS number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AsNumber, E> {
        u32::try_from(v)
            .map(AsNumber)
            .map_err(|_| E::custom(format!("AS number {v} is out of range")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AsNumber, E> {
        u32::try_from(v)
            .map(AsNumber)
            .map_err(|_| E::custom(format!("AS number {v} is out of range")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AsNumber, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AsVisitor)
    }
}

/// Whether `s` is a MAC address written as six `:`- or `-`-separated hex pairs.
pub fn is_mac(s: &str) -> bool {
    parse_mac(s).is_some()
}

/// The six bytes of a MAC address written with `:` or `-` separators (`02:00:00:00:00:01`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Checks that `text`, the value of `field`, is a selector Calico would accept.
pub fn check_selector(field: impl FnOnce() -> String, text: &str) -> Result<(), FieldError> {
    crate::selector::Selector::parse(text)
        .map(drop)
        .map_err(|e| FieldError::new(field(), Reason::BadSelector(Box::new(e))))
}
