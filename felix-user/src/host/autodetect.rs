//! The host's IPv4 address, found as Calico's IP autodetection methods do: `first-found`,
//! `interface=REGEX`, `can-reach=DEST`, `cidr=CIDR[,CIDR...]`.

use std::{
    net::{IpAddr, Ipv4Addr, UdpSocket},
    str::FromStr,
};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressScope};
use regex::Regex;
use rtnetlink::Handle;

/// Interfaces `first-found` skips, as Calico does (loopback, workload and container bridges).
const FIRST_FOUND_EXCLUDES: &str = r"^(lo|cali.*|docker.*|cbr.*|dummy.*|virbr.*|lxcbr.*|veth.*|tunl.*|vxlan.*|flannel.*|kube-ipvs.*)$";

/// How to pick the address.
#[derive(Clone, Debug)]
pub enum Method {
    FirstFound,
    Interface(Regex),
    CanReach(IpAddr),
    Cidr(Vec<Ipv4Net>),
}

/// Errors parsing a method or detecting an address.
#[derive(Debug, thiserror::Error)]
pub enum AutodetectError {
    #[error(
        "invalid IP autodetection method {0:?}: use first-found, interface=REGEX, can-reach=DEST or cidr=CIDR[,CIDR]"
    )]
    Invalid(String),
    #[error("list addresses: {0}")]
    List(rtnetlink::Error),
    #[error("no IPv4 address matches {0}")]
    NotFound(String),
    #[error("open an rtnetlink socket: {0}")]
    Socket(std::io::Error),
}

impl FromStr for Method {
    type Err = AutodetectError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || AutodetectError::Invalid(text.to_owned());
        match text.split_once('=') {
            None if text == "first-found" => Ok(Method::FirstFound),
            Some(("interface", regex)) => Regex::new(&format!("^(?:{regex})$"))
                .map(Method::Interface)
                .map_err(|_| invalid()),
            Some(("can-reach", dest)) => dest.parse().map(Method::CanReach).map_err(|_| invalid()),
            Some(("cidr", cidrs)) => cidrs
                .split(',')
                .map(|c| c.trim().parse::<Ipv4Net>())
                .collect::<Result<Vec<_>, _>>()
                .map(Method::Cidr)
                .map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

/// One IPv4 address of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAddr {
    pub iface: String,
    pub net: Ipv4Net,
}

/// Picks the address `method` selects from `addrs` (in the kernel's order). `route_source` is
/// the source the kernel would use towards a `can-reach` destination.
pub fn choose(
    method: &Method,
    addrs: &[HostAddr],
    route_source: Option<Ipv4Addr>,
) -> Option<HostAddr> {
    let excluded = Regex::new(FIRST_FOUND_EXCLUDES).ok()?;
    addrs
        .iter()
        .find(|a| match method {
            Method::FirstFound => !excluded.is_match(&a.iface),
            Method::Interface(regex) => regex.is_match(&a.iface),
            Method::CanReach(_) => Some(a.net.addr()) == route_source,
            Method::Cidr(cidrs) => cidrs.iter().any(|c| c.contains(&a.net.addr())),
        })
        .cloned()
}

/// The source address the kernel picks towards `dest` (a connected UDP socket sends nothing).
pub fn route_source(dest: IpAddr) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect((dest, 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

/// Lists the host's global IPv4 addresses with their interface names.
pub async fn host_addrs(
    handle: &Handle,
    name_of: impl Fn(u32) -> Option<String>,
) -> Result<Vec<HostAddr>, AutodetectError> {
    let mut addrs = Vec::new();
    let mut stream = handle.address().get().execute();
    while let Some(message) = stream.try_next().await.map_err(AutodetectError::List)? {
        if message.header.scope != AddressScope::Universe {
            continue;
        }
        let address = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(v4)) | AddressAttribute::Address(IpAddr::V4(v4)) => {
                Some(*v4)
            }
            _ => None,
        });
        let (Some(address), Some(iface)) = (address, name_of(message.header.index)) else {
            continue;
        };
        if let Ok(net) = Ipv4Net::new(address, message.header.prefix_len) {
            addrs.push(HostAddr { iface, net });
        }
    }
    Ok(addrs)
}

/// Detects the host's address with `method`.
pub async fn detect(
    handle: &Handle,
    method: &Method,
    name_of: impl Fn(u32) -> Option<String>,
) -> Result<HostAddr, AutodetectError> {
    let addrs = host_addrs(handle, name_of).await?;
    let source = match method {
        Method::CanReach(dest) => route_source(*dest),
        _ => None,
    };
    choose(method, &addrs, source).ok_or_else(|| AutodetectError::NotFound(format!("{method:?}")))
}

/// Detects the host's address with `method` on a netlink socket of its own, naming interfaces
/// from a link dump: the uplink is the interface that holds it.
pub async fn detect_standalone(method: &Method) -> Result<HostAddr, AutodetectError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(AutodetectError::Socket)?;
    let task = tokio::spawn(connection);
    let names = link_names(&handle).await;
    let detected = match names {
        Ok(names) => detect(&handle, method, |index| names.get(&index).cloned()).await,
        Err(error) => Err(error),
    };
    task.abort();
    detected
}

/// Every link's name by index.
async fn link_names(
    handle: &Handle,
) -> Result<std::collections::HashMap<u32, String>, AutodetectError> {
    use netlink_packet_route::link::LinkAttribute;
    let mut names = std::collections::HashMap::new();
    let mut stream = handle.link().get().execute();
    while let Some(message) = stream.try_next().await.map_err(AutodetectError::List)? {
        if let Some(name) = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        }) {
            names.insert(message.header.index, name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<HostAddr> {
        [
            ("lo", "127.0.0.1/8"),
            ("cali0123456789a", "169.254.1.1/32"),
            ("eth0", "10.0.0.1/24"),
            ("eth1", "172.16.0.5/16"),
        ]
        .into_iter()
        .map(|(iface, net)| HostAddr {
            iface: iface.into(),
            net: net.parse().unwrap(),
        })
        .collect()
    }

    #[test]
    fn methods_parse_or_say_what_is_accepted() {
        assert!(matches!("first-found".parse(), Ok(Method::FirstFound)));
        assert!(matches!(
            "interface=eth.*".parse(),
            Ok(Method::Interface(_))
        ));
        assert!(matches!(
            "can-reach=10.0.0.254".parse(),
            Ok(Method::CanReach(_))
        ));
        assert!(
            matches!("cidr=10.0.0.0/24,172.16.0.0/12".parse(), Ok(Method::Cidr(c)) if c.len() == 2)
        );
        for bad in [
            "",
            "first",
            "interface=(",
            "can-reach=nowhere",
            "cidr=10.0.0.0/33",
        ] {
            let err = bad.parse::<Method>().unwrap_err().to_string();
            assert!(err.contains("first-found, interface=REGEX"), "{bad}: {err}");
        }
    }

    #[test]
    fn each_method_picks_its_address() {
        let a = addrs();
        let pick = |m: &str, src| choose(&m.parse().unwrap(), &a, src).map(|h| h.net.to_string());
        assert_eq!(pick("first-found", None).as_deref(), Some("10.0.0.1/24"));
        assert_eq!(
            pick("interface=eth1", None).as_deref(),
            Some("172.16.0.5/16")
        );
        assert_eq!(
            pick("interface=eth", None),
            None,
            "the regex matches whole names"
        );
        assert_eq!(
            pick("cidr=172.16.0.0/12", None).as_deref(),
            Some("172.16.0.5/16")
        );
        assert_eq!(
            pick("can-reach=10.0.0.254", Some(Ipv4Addr::new(10, 0, 0, 1))).as_deref(),
            Some("10.0.0.1/24")
        );
        assert_eq!(pick("cidr=192.168.0.0/16", None), None);
    }
}
