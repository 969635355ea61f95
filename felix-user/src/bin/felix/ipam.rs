//! `felix ipam ...`: Calico IPAM in etcd.

use anyhow::Result;
use calico::ipam;
use clap::Subcommand;
use ipnet::Ipv4Net;

use crate::output::{EtcdArgs, parse_attr, parse_cidr, with_etcd};

#[derive(Subcommand)]
pub(crate) enum IpamCommand {
    /// Claim the first free block of a pool for a node (one etcd transaction).
    ///
    /// Example: felix ipam claim --node h1 --pool 192.168.0.0/16 --etcd-endpoints URL
    Claim {
        #[arg(long)]
        node: String,
        /// The IP pool's CIDR.
        #[arg(long, value_parser = parse_cidr)]
        pool: Ipv4Net,
        /// Prefix length of a block.
        #[arg(long, default_value_t = 26)]
        block_size: u8,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Assign an address to a handle from a block the node holds; prints the address.
    ///
    /// Example: felix ipam assign --node h1 --handle k8s-pod-network.p1 --attr pod=p1
    Assign {
        #[arg(long)]
        node: String,
        /// Calico's handle id of the allocation (e.g. k8s-pod-network.<container id>).
        #[arg(long)]
        handle: String,
        /// Secondary attributes, KEY=VALUE, repeated.
        #[arg(long = "attr", value_parser = parse_attr)]
        attrs: Vec<(String, String)>,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Release an address.
    Release {
        /// The address to free.
        #[arg(long)]
        ip: std::net::Ipv4Addr,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List blocks with their affinity and use.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

pub(crate) fn run_ipam(command: IpamCommand) -> Result<()> {
    match command {
        IpamCommand::Claim {
            node,
            pool,
            block_size,
            etcd,
        } => {
            let block = with_etcd(&etcd, async |client| {
                Ok(ipam::claim(client, &node, pool, block_size).await?)
            })?;
            println!("{block}");
        }
        IpamCommand::Assign {
            node,
            handle,
            attrs,
            etcd,
        } => {
            let ip = with_etcd(&etcd, async |client| {
                Ok(ipam::assign(client, &node, &handle, attrs.into_iter().collect()).await?)
            })?;
            println!("{ip}");
        }
        IpamCommand::Release { ip, etcd } => {
            with_etcd(&etcd, async |client| Ok(ipam::release(client, ip).await?))?;
            println!("released {ip}");
        }
        IpamCommand::Show { json, etcd } => {
            let blocks = with_etcd(&etcd, async |client| Ok(ipam::all_blocks(client).await?))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&blocks)?);
            } else {
                let rows: Vec<Vec<String>> = blocks
                    .iter()
                    .map(|b| {
                        vec![
                            b.cidr.to_string(),
                            b.affinity.clone().unwrap_or_else(|| "-".into()),
                            format!("{}/{}", b.used(), b.allocations.len()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    felix_rows::table(&["BLOCK", "AFFINITY", "USED"], &rows)
                );
            }
        }
    }
    Ok(())
}
