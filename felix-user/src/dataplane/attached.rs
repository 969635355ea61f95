//! What the kernel reports attached to the interfaces of the current network namespace:
//! TCX programs (`BPF_PROG_QUERY` per interface and direction) and XDP programs (the link's
//! `IFLA_XDP` attribute), whoever attached them. It answers "is anything still hooked here?"
//! independently of felix's own bookkeeping, and covers TCX, which `bpftool net show` before
//! bpftool 7.3 (Debian 12 ships 7.1) does not list. Classic `clsact` filters are not listed:
//! `tc filter show dev <iface> ingress` shows those.

use std::collections::HashMap;

use aya::programs::tc::{SchedClassifier, TcAttachType};
use aya::programs::{ProgramError, loaded_programs};
use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkXdp};
use serde::Serialize;

/// Errors listing attached programs.
#[derive(Debug, thiserror::Error)]
pub enum AttachedError {
    /// The rtnetlink socket could not be opened.
    #[error("open the rtnetlink socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The link dump failed.
    #[error("dump links: {0}")]
    Dump(#[from] rtnetlink::Error),
    /// The kernel refused a TCX query (kernels before 6.6 have no TCX).
    #[error("query the TCX {hook} programs of {iface}: {source}")]
    Query {
        iface: String,
        hook: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// One program on one hook of one interface.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AttachedRow {
    pub iface: String,
    pub ifindex: u32,
    /// `tcx_ingress`, `tcx_egress`, `xdp_driver`, `xdp_generic`, `xdp_offload` or `xdp`.
    pub hook: String,
    pub prog_id: u32,
    /// The program's name as the kernel knows it (empty when unnamed or already gone).
    pub prog_name: String,
}

/// A link of the namespace with its XDP program, if any.
struct Link {
    index: u32,
    name: String,
    xdp: Option<(&'static str, u32)>,
}

/// Lists every TCX and XDP program attached in the current network namespace, sorted by
/// interface name, then hook.
pub async fn list() -> Result<Vec<AttachedRow>, AttachedError> {
    let links = dump_links().await?;
    let mut rows = Vec::new();
    'links: for link in &links {
        for (attach_type, hook) in [
            (TcAttachType::Ingress, "tcx_ingress"),
            (TcAttachType::Egress, "tcx_egress"),
        ] {
            let programs = match SchedClassifier::query_tcx(&link.name, attach_type) {
                Ok((_, programs)) => programs,
                // Deleted since the dump (a pod went away): nothing to list.
                Err(_) if !link_exists(&link.name) => continue 'links,
                Err(source) => {
                    return Err(AttachedError::Query {
                        iface: link.name.clone(),
                        hook,
                        source,
                    });
                }
            };
            rows.extend(programs.iter().map(|program| AttachedRow {
                iface: link.name.clone(),
                ifindex: link.index,
                hook: hook.to_owned(),
                prog_id: program.id(),
                prog_name: program.name_as_str().unwrap_or_default().to_owned(),
            }));
        }
        if let Some((hook, prog_id)) = link.xdp {
            rows.push(AttachedRow {
                iface: link.name.clone(),
                ifindex: link.index,
                hook: hook.to_owned(),
                prog_id,
                prog_name: String::new(),
            });
        }
    }
    name_xdp_programs(&mut rows);
    rows.sort_by(|a, b| a.iface.cmp(&b.iface).then(a.hook.cmp(&b.hook)));
    Ok(rows)
}

/// Whether this namespace still has an interface called `name`.
fn link_exists(name: &str) -> bool {
    std::ffi::CString::new(name).is_ok_and(|name| {
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
    })
}

/// Renders rows as an aligned table.
pub fn table(rows: &[AttachedRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.iface.clone(),
                r.ifindex.to_string(),
                r.hook.clone(),
                r.prog_id.to_string(),
                r.prog_name.clone(),
            ]
        })
        .collect();
    felix_rows::table(&["IFACE", "IFINDEX", "HOOK", "PROG_ID", "NAME"], &cells)
}

async fn dump_links() -> Result<Vec<Link>, AttachedError> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(connection);
    let mut links = Vec::new();
    let mut dump = handle.link().get().execute();
    let result = async {
        while let Some(message) = dump.try_next().await? {
            let mut link = Link {
                index: message.header.index,
                name: String::new(),
                xdp: None,
            };
            for attribute in &message.attributes {
                match attribute {
                    LinkAttribute::IfName(name) => link.name.clone_from(name),
                    LinkAttribute::Xdp(xdp) => link.xdp = xdp_program(xdp),
                    _ => {}
                }
            }
            links.push(link);
        }
        Ok::<_, AttachedError>(())
    }
    .await;
    task.abort();
    result.map(|()| links)
}

/// The attach mode and program id in a link's `IFLA_XDP` nest. The mode-specific ids are
/// present when the kernel knows the mode; `ProgId` alone (also set with several modes) is
/// reported as plain `xdp`.
fn xdp_program(attributes: &[LinkXdp]) -> Option<(&'static str, u32)> {
    let mut found = None;
    for attribute in attributes {
        match *attribute {
            LinkXdp::DrvProgId(id) if id != 0 => return Some(("xdp_driver", id)),
            LinkXdp::SkbProgId(id) if id != 0 => return Some(("xdp_generic", id)),
            LinkXdp::HwProgId(id) if id != 0 => return Some(("xdp_offload", id)),
            LinkXdp::ProgId(id) if id != 0 => found = Some(("xdp", id)),
            _ => {}
        }
    }
    found
}

/// Fills in the names of XDP programs (netlink gives only their ids) from the kernel's list of
/// loaded programs; a program that cannot be read keeps an empty name.
fn name_xdp_programs(rows: &mut [AttachedRow]) {
    if rows.iter().all(|row| !row.prog_name.is_empty()) {
        return;
    }
    let names: HashMap<u32, String> = loaded_programs()
        .filter_map(Result::ok)
        .map(|info| {
            let name = info.name_as_str().unwrap_or_default().to_owned();
            (info.id(), name)
        })
        .collect();
    for row in rows.iter_mut().filter(|row| row.prog_name.is_empty()) {
        if let Some(name) = names.get(&row.prog_id) {
            row.prog_name.clone_from(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_mode_ids_win_over_the_plain_id() {
        let nest = [
            LinkXdp::Attached(netlink_packet_route::link::XdpAttached::SocketBuffer),
            LinkXdp::ProgId(7),
            LinkXdp::SkbProgId(7),
        ];
        assert_eq!(xdp_program(&nest), Some(("xdp_generic", 7)));
        assert_eq!(xdp_program(&[LinkXdp::ProgId(9)]), Some(("xdp", 9)));
        assert_eq!(xdp_program(&[LinkXdp::ProgId(0)]), None);
        assert_eq!(xdp_program(&[]), None);
    }

    #[test]
    fn only_existing_links_exist() {
        assert!(link_exists("lo"));
        assert!(!link_exists("felix-no-such0"));
        assert!(!link_exists("bad\0name"));
    }

    #[test]
    fn table_aligns_every_row_under_the_header() {
        let rows = [AttachedRow {
            iface: "eth0".into(),
            ifindex: 2,
            hook: "tcx_ingress".into(),
            prog_id: 41,
            prog_name: "from_uplink".into(),
        }];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["eth0", "2", "tcx_ingress", "41", "from_uplink"]
        );
        // Each cell starts where its column's header starts.
        for (header, cell) in ["IFINDEX", "HOOK", "PROG_ID", "NAME"].into_iter().zip([
            "2",
            "tcx_ingress",
            "41",
            "from_uplink",
        ]) {
            let column = lines[0].find(header).expect("header");
            assert_eq!(&lines[1][column..column + cell.len()], cell, "{header}");
        }
    }
}
