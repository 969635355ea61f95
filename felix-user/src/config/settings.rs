//! The typed configuration of `felix run`, parsed from the values the layers chose.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use calico::etcd_access::{EtcdAccess, TlsFiles};

use super::{duration, layers::RawValue, source::Source};
use crate::{
    config::Mode,
    dataplane::failsafe::{FailsafePort, FailsafePorts},
    dataplane::loader::MapSizes,
    host::autodetect,
    iptables::Backend,
};

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid {setting} {value:?} from {layer} ({origin}): {reason}; accepted: {accepts}")]
    Invalid {
        setting: &'static str,
        value: String,
        layer: Source,
        origin: String,
        reason: String,
        accepts: &'static str,
    },
    /// A required setting has no value.
    #[error("{setting} is required: pass --{flag} or set {env}")]
    Missing {
        setting: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    /// FelixConfiguration could not be read from etcd.
    #[error("read FelixConfiguration from etcd at {endpoints}: {reason}")]
    Etcd { endpoints: String, reason: String },
}

/// Everything `felix run` needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node: String,
    pub etcd_endpoints: Vec<String>,
    /// TLS files for `https://` etcd endpoints.
    pub etcd_tls: TlsFiles,
    pub mode: Mode,
    /// The uplink named by FELIX_UPLINK; `None`: the interface of the autodetected address.
    pub uplink: Option<String>,
    /// OpenstackRegion: names the status keys' region (`region-<name>`; unset: `no-region`).
    pub region: Option<String>,
    pub workload_prefixes: Vec<String>,
    pub ip_autodetection: autodetect::Method,
    pub as_number: Option<u32>,
    /// The tracing level of felix's log (`RUST_LOG` overrides it).
    pub log_level: tracing::Level,
    /// Where `/metrics` is served; `None`: not served.
    pub metrics_address: Option<SocketAddr>,
    /// Where `/liveness` and `/readiness` are served; `None`: not served.
    pub health_address: Option<SocketAddr>,
    pub route_refresh_interval: Duration,
    pub status_ttl: Duration,
    pub ct_gc_interval: Duration,
    pub map_sizes: MapSizes,
    /// Conntrack fill level (percent) from which felix warns and counts near-full events.
    pub conntrack_near_full_percent: u8,
    /// Share (percent) of the conntrack table one endpoint may hold; 100: no limit.
    pub conntrack_endpoint_share_percent: u8,
    /// XDPEnabled: the uplink's XDP prefilter may be attached (while the deny list has entries).
    pub xdp_enabled: bool,
    pub failsafe_inbound: Vec<FailsafePort>,
    pub failsafe_outbound: Vec<FailsafePort>,
}

/// Reads the values of `values` by setting name.
struct Reader<'a> {
    values: &'a [RawValue],
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> &RawValue {
        self.values
            .iter()
            .find(|v| v.setting.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the settings table"))
    }

    /// The parsed value of `name`, `None` when unset.
    fn optional<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let raw = self.raw(name);
        let Some(text) = &raw.text else {
            return Ok(None);
        };
        parse(text.trim())
            .map(Some)
            .map_err(|reason| ConfigError::Invalid {
                setting: raw.setting.name,
                value: text.clone(),
                layer: raw.source,
                origin: raw.origin.clone(),
                reason,
                accepts: raw.setting.accepts,
            })
    }

    /// The parsed value of `name`, which must be set.
    fn required<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.optional(name, parse)?.ok_or_else(|| {
            let setting = self.raw(name).setting;
            ConfigError::Missing {
                setting: setting.name,
                flag: setting.flag,
                env: setting.env[0],
            }
        })
    }
}

impl Settings {
    /// etcd's endpoints and TLS files.
    pub fn etcd_access(&self) -> EtcdAccess {
        EtcdAccess::new(self.etcd_endpoints.clone()).with_tls(self.etcd_tls.clone())
    }

    /// Parses and checks every value.
    pub fn from_values(values: &[RawValue]) -> Result<Self, ConfigError> {
        let r = Reader { values };
        let mode = r.required("BPFEnabled", parse_bpf_enabled)?;
        let backend = r.required("IptablesBackend", parse_backend)?;
        let size = |name| r.required(name, parse_size);
        let metrics = listen(
            &r,
            "PrometheusMetricsEnabled",
            "PrometheusMetricsHost",
            "PrometheusMetricsPort",
        )?;
        let health = listen(&r, "HealthEnabled", "HealthHost", "HealthPort")?;
        Ok(Settings {
            node: r.required("NodeName", parse_node)?,
            etcd_endpoints: r.required("EtcdEndpoints", |t| Ok(parse_list(t)))?,
            etcd_tls: TlsFiles {
                ca: r.optional("EtcdCaFile", parse_path)?.flatten(),
                cert: r.optional("EtcdCertFile", parse_path)?.flatten(),
                key: r.optional("EtcdKeyFile", parse_path)?.flatten(),
            },
            mode: if mode {
                Mode::Bpf
            } else {
                Mode::Iptables(backend)
            },
            uplink: r.optional("Uplink", parse_nonempty)?,
            region: r.optional("OpenstackRegion", parse_region)?,
            workload_prefixes: r.required("InterfacePrefix", |t| {
                let list = parse_list(t);
                if list.is_empty() {
                    Err("no prefix given".into())
                } else {
                    Ok(list)
                }
            })?,
            ip_autodetection: r.required("IPAutodetectionMethod", |t| {
                t.parse()
                    .map_err(|e: autodetect::AutodetectError| e.to_string())
            })?,
            as_number: r.optional("ASNumber", |t| {
                t.parse::<u32>()
                    .ok()
                    .filter(|n| *n != 0)
                    .ok_or_else(|| "not a number from 1 to 4294967295".into())
            })?,
            log_level: r.required("LogSeverityScreen", parse_log_level)?,
            metrics_address: metrics,
            health_address: health,
            route_refresh_interval: r.required("RouteRefreshInterval", |t| parse_interval(t, 1))?,
            status_ttl: r.required("ReportingTTL", |t| parse_interval(t, 3))?,
            ct_gc_interval: r.required("ConntrackGCInterval", |t| parse_interval(t, 1))?,
            map_sizes: MapSizes {
                conntrack: size("BPFMapSizeConntrack")?,
                routes: size("BPFMapSizeRoute")?,
                ifstate: size("BPFMapSizeIfState")?,
                policy_ips: size("BPFMapSizeIPSets")?,
                policy_ports: size("BPFMapSizePolicyPorts")?,
                policy_verdicts: size("BPFMapSizePolicyVerdicts")?,
                xdp_deny: size("BPFMapSizeXDPDeny")?,
            },
            conntrack_near_full_percent: r.required("ConntrackNearFullPercent", parse_percent)?,
            conntrack_endpoint_share_percent: r
                .required("BPFConntrackEndpointSharePercent", parse_percent)?,
            xdp_enabled: r.required("XDPEnabled", parse_bool)?,
            failsafe_inbound: r.required("FailsafeInboundHostPorts", parse_failsafe)?,
            failsafe_outbound: r.required("FailsafeOutboundHostPorts", parse_failsafe)?,
        })
    }
}

/// A whole percentage from 1 to 100.
fn parse_percent(text: &str) -> Result<u8, String> {
    text.parse::<u8>()
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or_else(|| "not a whole percentage from 1 to 100".into())
}

/// An address to serve on from (enabled, host, port) settings; `None` when disabled.
fn listen(
    r: &Reader<'_>,
    enabled: &str,
    host: &str,
    port: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let on = r.required(enabled, parse_bool)?;
    let host = r.required(host, parse_host)?;
    let port = r.required(port, parse_port)?;
    Ok(on.then_some(SocketAddr::new(host, port)))
}

/// The largest map size felix accepts (the kernel's limit depends on memory).
pub const MAX_MAP_SIZE: u32 = 1 << 24;

fn parse_size(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_MAP_SIZE).contains(n))
        .ok_or_else(|| "not a whole number in range".into())
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean".into()),
    }
}

fn parse_bpf_enabled(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "bpf" => Ok(true),
        "iptables" => Ok(false),
        _ => parse_bool(text).map_err(|_| "neither a dataplane nor a boolean".into()),
    }
}

fn parse_backend(text: &str) -> Result<Backend, String> {
    match text.to_ascii_lowercase().as_str() {
        "nft" | "auto" => Ok(Backend::Nft),
        "legacy" => Ok(Backend::Legacy),
        _ => Err("not an iptables backend".into()),
    }
}

fn parse_log_level(text: &str) -> Result<tracing::Level, String> {
    match text.to_ascii_lowercase().as_str() {
        "trace" => Ok(tracing::Level::TRACE),
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warning" | "warn" => Ok(tracing::Level::WARN),
        "error" | "fatal" | "panic" => Ok(tracing::Level::ERROR),
        _ => Err("not a log severity".into()),
    }
}

fn parse_host(text: &str) -> Result<IpAddr, String> {
    match text {
        "" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "localhost" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        _ => text.parse().map_err(|_| "not an IP address".into()),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| "not a port".into())
}

fn parse_interval(text: &str, min_secs: u64) -> Result<Duration, String> {
    let d = duration::parse(text).ok_or("not seconds or a Go duration")?;
    if d < Duration::from_secs(min_secs) || d > Duration::from_secs(3600) {
        return Err(format!("{} is out of range", duration::format(d)));
    }
    Ok(d)
}

fn parse_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_nonempty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("empty".into())
    } else {
        Ok(text.to_owned())
    }
}

/// Longest region Calico accepts: a DNS label (63) less the `openstack-region-` prefix it adds.
const MAX_REGION: usize = 63 - "openstack-region-".len();

/// A region: a DNS-1123 label (lower-case letters, digits, '-' inside) of at most
/// [`MAX_REGION`] characters, as Calico's felix checks it.
fn parse_region(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if text.len() > MAX_REGION {
        Err(format!("longer than {MAX_REGION} characters"))
    } else if !inner_ok || !ends_ok(bytes.first()) || !ends_ok(bytes.last()) {
        Err("not a DNS label (lower-case letters, digits and '-' inside)".into())
    } else {
        Ok(text.to_owned())
    }
}

fn parse_node(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err("not a valid node name".into())
    }
}

fn parse_failsafe(text: &str) -> Result<Vec<FailsafePort>, String> {
    text.parse::<FailsafePorts>()
        .map(|p| p.0)
        .map_err(|e| e.to_string())
}

/// A file path; empty is unset, as in Calico.
fn parse_path(text: &str) -> Result<Option<std::path::PathBuf>, String> {
    Ok((!text.is_empty()).then(|| text.into()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::layers::Layers;

    fn base() -> Layers {
        Layers {
            env: vec![
                ("FELIX_NODENAME".into(), "h1".into()),
                ("FELIX_ETCDENDPOINTS".into(), "http://127.0.0.1:2379".into()),
            ],
            ..Layers::default()
        }
    }

    fn settings(layers: &Layers) -> Result<Settings, ConfigError> {
        Settings::from_values(&layers.pick())
    }

    #[test]
    fn built_in_defaults_resolve() {
        let s = settings(&base()).expect("defaults are valid");
        assert_eq!(s.node, "h1");
        assert_eq!(s.mode, Mode::Bpf);
        assert_eq!(
            s.metrics_address,
            Some("0.0.0.0:9091".parse().expect("addr"))
        );
        assert_eq!(
            s.health_address,
            Some("127.0.0.1:9099".parse().expect("addr"))
        );
        assert_eq!(s.map_sizes, MapSizes::default());
        assert_eq!(s.route_refresh_interval, Duration::from_secs(10));
        assert!(s.xdp_enabled);
        assert_eq!(
            s.uplink, None,
            "unset: the autodetected address's interface"
        );
        assert_eq!(s.region, None);
        assert_eq!(s.failsafe_inbound.len(), 9);
        assert!(
            s.failsafe_inbound
                .iter()
                .any(|p| p.port == 22 && p.protocol == 6)
        );
        assert!(
            s.failsafe_outbound
                .iter()
                .any(|p| p.port == 53 && p.protocol == 17)
        );
    }

    #[test]
    fn region_is_a_dns_label_as_calico_checks_it() {
        let with = |region: &str| {
            let mut layers = base();
            layers
                .env
                .push(("FELIX_OPENSTACKREGION".into(), region.into()));
            settings(&layers).map(|s| s.region)
        };
        assert_eq!(with("europe-1").expect("valid"), Some("europe-1".into()));
        assert_eq!(
            with(&"a".repeat(46))
                .expect("46 is the limit")
                .map(|r| r.len()),
            Some(46)
        );
        for bad in ["Europe", "-eu", "eu-", "eu_1", "eu.1", &"a".repeat(47)] {
            let err = with(bad).expect_err(bad).to_string();
            assert!(err.contains("OpenstackRegion"), "{bad}: {err}");
        }
    }

    #[test]
    fn felix_configuration_values_take_effect() {
        let mut layers = base();
        layers.default = json!({
            "bpfEnabled": false,
            "iptablesBackend": "Legacy",
            "bpfMapSizeConntrack": 1000,
            "routeRefreshInterval": "1m30s",
            "prometheusMetricsEnabled": false,
            "healthHost": "localhost",
            "healthPort": 9199,
            "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 2222}],
            "logSeverityScreen": "Warning",
            "xdpEnabled": false
        })
        .as_object()
        .cloned();
        let s = settings(&layers).expect("valid");
        assert_eq!(s.mode, Mode::Iptables(Backend::Legacy));
        assert_eq!(s.map_sizes.conntrack, 1000);
        assert_eq!(s.route_refresh_interval, Duration::from_secs(90));
        assert_eq!(s.metrics_address, None);
        assert_eq!(
            s.health_address,
            Some("127.0.0.1:9199".parse().expect("addr"))
        );
        assert_eq!(
            s.failsafe_inbound,
            [FailsafePort {
                protocol: 6,
                port: 2222
            }]
        );
        assert_eq!(s.log_level, tracing::Level::WARN);
        assert!(!s.xdp_enabled);
        // Calico's variable, any case, over FelixConfiguration.
        layers.env.push(("Felix_XDPEnabled".into(), "true".into()));
        assert!(settings(&layers).expect("valid").xdp_enabled);
    }

    #[test]
    fn our_dataplane_flag_and_calicos_bpf_enabled_are_one_setting() {
        let mut layers = base();
        layers.env.push(("FELIX_BPFENABLED".into(), "false".into()));
        assert!(matches!(
            settings(&layers).expect("valid").mode,
            Mode::Iptables(_)
        ));
        layers.flags.insert("BPFEnabled", "bpf".into());
        assert_eq!(settings(&layers).expect("valid").mode, Mode::Bpf);
    }

    #[test]
    fn an_invalid_value_names_the_setting_its_source_and_what_is_accepted() {
        let cases = [
            (
                "FELIX_PROMETHEUSMETRICSPORT",
                "abc",
                "PrometheusMetricsPort",
            ),
            ("FELIX_BPFMAPSIZECONNTRACK", "0", "BPFMapSizeConntrack"),
            ("FELIX_BPFMAPSIZEROUTE", "99999999999", "BPFMapSizeRoute"),
            ("FELIX_ROUTEREFRESHINTERVAL", "2h", "RouteRefreshInterval"),
            ("FELIX_REPORTINGTTLSECS", "1", "ReportingTTL"),
            ("FELIX_LOGSEVERITYSCREEN", "loud", "LogSeverityScreen"),
            ("FELIX_BPFENABLED", "maybe", "BPFEnabled"),
            ("FELIX_IPTABLESBACKEND", "ebtables", "IptablesBackend"),
            ("FELIX_HEALTHHOST", "not-an-ip", "HealthHost"),
            (
                "FELIX_FAILSAFEINBOUNDHOSTPORTS",
                "tcp:70000",
                "FailsafeInboundHostPorts",
            ),
            (
                "FELIX_CONNTRACKNEARFULLPERCENT",
                "101",
                "ConntrackNearFullPercent",
            ),
            (
                "FELIX_BPFCONNTRACKENDPOINTSHAREPERCENT",
                "0",
                "BPFConntrackEndpointSharePercent",
            ),
            (
                "FELIX_IP_AUTODETECTION_METHOD",
                "guess",
                "IPAutodetectionMethod",
            ),
        ];
        for (env, value, name) in cases {
            let mut layers = base();
            layers.env.push((env.into(), value.into()));
            let error = settings(&layers).expect_err(env).to_string();
            assert!(error.contains(name), "{error}");
            assert!(error.contains(env), "{error}");
            assert!(error.contains("environment"), "{error}");
            assert!(error.contains("accepted: "), "{error}");
        }
    }

    #[test]
    fn an_invalid_felix_configuration_value_names_the_resource() {
        let mut layers = base();
        layers.node = json!({"healthPort": 0}).as_object().cloned();
        let error = settings(&layers).expect_err("port 0").to_string();
        assert!(
            error.contains("HealthPort") && error.contains("node.<nodename> spec.healthPort"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_node_name_says_how_to_give_it() {
        let layers = Layers {
            env: vec![("FELIX_ETCDENDPOINTS".into(), "http://e:2379".into())],
            ..Layers::default()
        };
        let error = settings(&layers).expect_err("no node").to_string();
        assert!(
            error.contains("--node") && error.contains("FELIX_NODENAME"),
            "{error}"
        );
    }
}
