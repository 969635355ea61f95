//! Every `felix run` setting: its name (Calico's where Calico has it), its flag, its environment
//! variables, its FelixConfiguration field and its built-in default.

/// How one setting can be given.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// Calico's configuration name (`PrometheusMetricsPort`), or felix's own.
    pub name: &'static str,
    /// The `felix run` flag, without `--`.
    pub flag: &'static str,
    /// Environment variables, first match wins (matched in any case, as Calico does).
    pub env: &'static [&'static str],
    /// The FelixConfiguration `spec` field; `None`: flag and environment only.
    pub field: Option<&'static str>,
    /// The built-in default; `None`: the setting is required or unset by default.
    pub default: Option<&'static str>,
    /// What the setting accepts, for error messages and `--help`.
    pub accepts: &'static str,
}

const fn setting(
    name: &'static str,
    flag: &'static str,
    env: &'static [&'static str],
    field: Option<&'static str>,
    default: Option<&'static str>,
    accepts: &'static str,
) -> Setting {
    Setting {
        name,
        flag,
        env,
        field,
        default,
        accepts,
    }
}

const SIZE: &str = "a number of entries from 1 to 16777216";

/// The settings, in the order `felix run --print-config` prints them.
pub const SETTINGS: [Setting; 34] = [
    setting(
        "NodeName",
        "node",
        &["FELIX_NODENAME", "FELIX_FELIXHOSTNAME"],
        None,
        None,
        "a node name: letters, digits, '-', '_' or '.'",
    ),
    setting(
        "EtcdEndpoints",
        "etcd-endpoints",
        &["FELIX_ETCDENDPOINTS"],
        None,
        None,
        "comma-separated etcd client URLs",
    ),
    setting(
        "EtcdCaFile",
        "etcd-ca-cert-file",
        &["FELIX_ETCDCAFILE"],
        None,
        None,
        "a PEM file: the CA that signed etcd's server certificate (needed for https://)",
    ),
    setting(
        "EtcdCertFile",
        "etcd-cert-file",
        &["FELIX_ETCDCERTFILE"],
        None,
        None,
        "a PEM file: the client certificate etcd's --client-cert-auth asks for",
    ),
    setting(
        "EtcdKeyFile",
        "etcd-key-file",
        &["FELIX_ETCDKEYFILE"],
        None,
        None,
        "a PEM file: the client certificate's private key",
    ),
    setting(
        "BPFEnabled",
        "dataplane",
        &["FELIX_BPFENABLED", "FELIX_DATAPLANE"],
        Some("bpfEnabled"),
        Some("bpf"),
        "bpf or iptables (true means bpf, false iptables)",
    ),
    setting(
        "IptablesBackend",
        "iptables-backend",
        &["FELIX_IPTABLESBACKEND"],
        Some("iptablesBackend"),
        Some("nft"),
        "nft, legacy or auto (auto means nft), any case",
    ),
    setting(
        "Uplink",
        "uplink",
        &["FELIX_UPLINK"],
        None,
        None,
        "an interface name; unset: the interface that holds the node's autodetected address",
    ),
    setting(
        "InterfacePrefix",
        "workload-prefixes",
        &["FELIX_INTERFACEPREFIX"],
        Some("interfacePrefix"),
        Some("cali"),
        "comma-separated interface name prefixes",
    ),
    setting(
        "IPAutodetectionMethod",
        "ip-autodetection-method",
        &["FELIX_IP_AUTODETECTION_METHOD"],
        None,
        Some("first-found"),
        "first-found, interface=REGEX, can-reach=DEST or cidr=CIDR[,CIDR]",
    ),
    setting(
        "OpenstackRegion",
        "region",
        &["FELIX_OPENSTACKREGION"],
        Some("openstackRegion"),
        None,
        "a DNS label of at most 46 characters; unset: no region",
    ),
    setting(
        "ASNumber",
        "as-number",
        &["FELIX_ASNUMBER"],
        None,
        None,
        "an AS number from 1 to 4294967295",
    ),
    setting(
        "LogSeverityScreen",
        "log-level",
        &["FELIX_LOGSEVERITYSCREEN"],
        Some("logSeverityScreen"),
        Some("Info"),
        "Debug, Info, Warning, Error, Fatal or Panic, any case",
    ),
    setting(
        "PrometheusMetricsEnabled",
        "metrics-enabled",
        &["FELIX_PROMETHEUSMETRICSENABLED"],
        Some("prometheusMetricsEnabled"),
        Some("true"),
        "true or false",
    ),
    setting(
        "PrometheusMetricsHost",
        "metrics-host",
        &["FELIX_PROMETHEUSMETRICSHOST"],
        Some("prometheusMetricsHost"),
        Some("0.0.0.0"),
        "an IP address, localhost, or empty for every address",
    ),
    setting(
        "PrometheusMetricsPort",
        "metrics-port",
        &["FELIX_PROMETHEUSMETRICSPORT"],
        Some("prometheusMetricsPort"),
        Some("9091"),
        "a port from 1 to 65535",
    ),
    setting(
        "HealthEnabled",
        "health-enabled",
        &["FELIX_HEALTHENABLED"],
        Some("healthEnabled"),
        Some("true"),
        "true or false",
    ),
    setting(
        "HealthHost",
        "health-host",
        &["FELIX_HEALTHHOST"],
        Some("healthHost"),
        Some("127.0.0.1"),
        "an IP address, localhost, or empty for every address",
    ),
    setting(
        "HealthPort",
        "health-port",
        &["FELIX_HEALTHPORT"],
        Some("healthPort"),
        Some("9099"),
        "a port from 1 to 65535",
    ),
    setting(
        "RouteRefreshInterval",
        "route-refresh-interval",
        &["FELIX_ROUTEREFRESHINTERVAL"],
        Some("routeRefreshInterval"),
        Some("10s"),
        "1s to 1h: seconds (10) or a Go duration (10s, 1m30s)",
    ),
    setting(
        "ReportingTTL",
        "status-ttl",
        &["FELIX_REPORTINGTTLSECS"],
        Some("reportingTTL"),
        Some("30s"),
        "3s to 1h: seconds (30) or a Go duration (30s, 1m)",
    ),
    setting(
        "ConntrackGCInterval",
        "ct-gc-interval",
        &["FELIX_CONNTRACKGCINTERVAL"],
        None,
        Some("1s"),
        "1s to 1h: seconds (10) or a Go duration (10s, 1m)",
    ),
    setting(
        "BPFMapSizeConntrack",
        "map-size-conntrack",
        &["FELIX_BPFMAPSIZECONNTRACK"],
        Some("bpfMapSizeConntrack"),
        Some("262144"),
        SIZE,
    ),
    setting(
        "BPFMapSizeRoute",
        "map-size-route",
        &["FELIX_BPFMAPSIZEROUTE"],
        Some("bpfMapSizeRoute"),
        Some("65536"),
        SIZE,
    ),
    setting(
        "BPFMapSizeIfState",
        "map-size-ifstate",
        &["FELIX_BPFMAPSIZEIFSTATE"],
        Some("bpfMapSizeIfState"),
        Some("4096"),
        SIZE,
    ),
    setting(
        "BPFMapSizeIPSets",
        "map-size-ipsets",
        &["FELIX_BPFMAPSIZEIPSETS"],
        Some("bpfMapSizeIPSets"),
        Some("262144"),
        SIZE,
    ),
    setting(
        "BPFMapSizePolicyPorts",
        "map-size-policy-ports",
        &["FELIX_BPFMAPSIZEPOLICYPORTS"],
        None,
        Some("65536"),
        SIZE,
    ),
    setting(
        "BPFMapSizePolicyVerdicts",
        "map-size-policy-verdicts",
        &["FELIX_BPFMAPSIZEPOLICYVERDICTS"],
        None,
        Some("262144"),
        SIZE,
    ),
    setting(
        "BPFMapSizeXDPDeny",
        "map-size-xdp-deny",
        &["FELIX_BPFMAPSIZEXDPDENY"],
        None,
        Some("16384"),
        SIZE,
    ),
    setting(
        "ConntrackNearFullPercent",
        "conntrack-near-full-percent",
        &["FELIX_CONNTRACKNEARFULLPERCENT"],
        None,
        Some("90"),
        "a percentage from 1 to 100",
    ),
    setting(
        "BPFConntrackEndpointSharePercent",
        "conntrack-endpoint-share-percent",
        &["FELIX_BPFCONNTRACKENDPOINTSHAREPERCENT"],
        None,
        Some("25"),
        "a percentage from 1 to 100 (100: no limit)",
    ),
    setting(
        "XDPEnabled",
        "xdp-enabled",
        &["FELIX_XDPENABLED"],
        Some("xdpEnabled"),
        Some("true"),
        "true or false",
    ),
    setting(
        "FailsafeInboundHostPorts",
        "failsafe-inbound-host-ports",
        &["FELIX_FAILSAFEINBOUNDHOSTPORTS"],
        Some("failsafeInboundHostPorts"),
        Some(crate::dataplane::failsafe::DEFAULT_INBOUND),
        "comma-separated [proto:][0.0.0.0/0:]port (tcp, udp, sctp), or none",
    ),
    setting(
        "FailsafeOutboundHostPorts",
        "failsafe-outbound-host-ports",
        &["FELIX_FAILSAFEOUTBOUNDHOSTPORTS"],
        Some("failsafeOutboundHostPorts"),
        Some(crate::dataplane::failsafe::DEFAULT_OUTBOUND),
        "comma-separated [proto:][0.0.0.0/0:]port (tcp, udp, sctp), or none",
    ),
];

/// The setting called `name`.
pub fn by_name(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_flags_variables_and_fields_are_unique() {
        let mut seen = BTreeSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.name), "{}", s.name);
            assert!(seen.insert(s.flag), "{}", s.flag);
            for env in s.env {
                assert!(env.starts_with("FELIX_"), "{env}");
                assert!(seen.insert(env), "{env}");
            }
            if let Some(field) = s.field {
                assert!(seen.insert(field), "{field}");
            }
        }
    }

    #[test]
    fn calico_settings_use_calicos_upper_cased_variable() {
        for s in SETTINGS.iter().filter(|s| s.field.is_some()) {
            let calico = format!("FELIX_{}", s.name.to_ascii_uppercase());
            let calico_secs = format!("{calico}SECS");
            assert!(
                s.env.iter().any(|e| *e == calico || *e == calico_secs),
                "{} has no {calico}",
                s.name
            );
        }
    }
}
