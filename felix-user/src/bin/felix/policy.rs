//! `felix policy explain`.

use anyhow::Result;
use calico::model;
use clap::{Args, Subcommand};

use crate::output::{EtcdArgs, with_etcd};

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Which tier, policy and rule decide a packet, and why: the sender's egress policy and
    /// the receiver's ingress policy, computed from etcd as felix programs them.
    ///
    /// Example: felix policy explain --from 192.168.2.1 --to 192.168.3.1 --proto tcp --port 80
    Explain(ExplainArgs),
}

#[derive(Args)]
pub(crate) struct ExplainArgs {
    /// Source IPv4 address.
    #[arg(long)]
    pub(crate) from: std::net::Ipv4Addr,
    /// Destination IPv4 address.
    #[arg(long)]
    pub(crate) to: std::net::Ipv4Addr,
    /// Protocol: tcp, udp, icmp, sctp or a number 1-255.
    #[arg(long, default_value = "tcp", value_parser = parse_protocol)]
    pub(crate) proto: u8,
    /// Destination port (TCP, UDP, SCTP).
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// Source port (TCP, UDP, SCTP).
    #[arg(long, default_value_t = 40000)]
    pub(crate) sport: u16,
    /// ICMP type (with --proto icmp).
    #[arg(long, default_value_t = 8)]
    pub(crate) icmp_type: u8,
    /// ICMP code (with --proto icmp).
    #[arg(long, default_value_t = 0)]
    pub(crate) icmp_code: u8,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) etcd: EtcdArgs,
}

/// Accepts a protocol name Calico knows or a number.
pub(crate) fn parse_protocol(text: &str) -> Result<u8, String> {
    text.parse::<model::Protocol>()
        .map(model::Protocol::number)
        .map_err(|e| format!("{e}; example: --proto tcp"))
}

/// `felix policy explain`: lists Calico's resources, calculates as felix does, and explains.
pub(crate) fn explain_policy(args: &ExplainArgs) -> Result<()> {
    use felix_user::calc::policy::{L4, Packet, calc::PolicyCalc, explain};
    let prefix = "/calico/resources/v3/projectcalico.org/";
    let kvs = with_etcd(&args.etcd, async |client| {
        let options = etcd_client::GetOptions::new().with_prefix();
        let response = calico::etcd_access::kv(client)
            .get(prefix, Some(options))
            .await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap_or("").to_owned(), kv.value().to_vec()))
            .collect::<Vec<_>>())
    })?;
    let mut calc = PolicyCalc::new();
    for (key, value) in &kvs {
        match model::Resource::from_etcd(key, value) {
            Ok(resource) => calc.upsert(key, &resource),
            Err(error) => eprintln!("warning: skipped {key}: {error}"),
        }
    }
    let l4 = match args.proto {
        1 => L4::Icmp {
            icmp_type: args.icmp_type,
            code: args.icmp_code,
        },
        6 | 17 | 132 => L4::Ports {
            src: args.sport,
            dst: args.port,
        },
        _ => L4::Other,
    };
    let packet = Packet {
        src: args.from,
        dst: args.to,
        proto: args.proto,
        l4,
    };
    let answer = explain::explain(&mut calc, &packet);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{answer}");
    }
    Ok(())
}
