//! Attaching programs to an interface so that they outlive felix: TCX and XDP links are pinned
//! under the node's pin tree (`links/<hook>-<iface>`; bpffs allows no dots in names), and a restarted felix swaps its new
//! programs into the pinned links atomically (`bpf_link_update`) instead of detaching, so no
//! packet ever meets an interface without a program. Where the kernel has no TCX (before 6.6),
//! a netlink `clsact` filter is used; those are not adopted across restarts.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::programs::{
    LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc::{self, NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
    xdp::{XdpLink, XdpLinkId},
};
use felix_common::ifaces::attach_mode;
use tracing::{debug, warn};

/// Errors attaching a program.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Neither TCX nor netlink attachment worked.
    #[error("attach {hook} to {iface}: TCX failed ({tcx}), netlink failed ({netlink})")]
    Tc {
        hook: &'static str,
        iface: String,
        tcx: Box<ProgramError>,
        netlink: String,
    },
    /// Neither native nor generic XDP worked.
    #[error("attach XDP to {iface}: {source}")]
    Xdp {
        iface: String,
        #[source]
        source: Box<ProgramError>,
    },
}

/// How an attachment is held.
#[derive(Debug)]
pub enum Holder {
    /// Pinned link; `owned` is the program's handle on it when it was adopted (its fd).
    Pinned { pin: PathBuf, owned: Option<LinkId> },
    /// Owned by the program only (netlink filters): detached when felix exits.
    Owned(LinkId),
}

/// A program's handle on a link.
#[derive(Debug)]
pub enum LinkId {
    Tc(SchedClassifierLinkId),
    Xdp(XdpLinkId),
}

/// One attached program.
#[derive(Debug)]
pub struct Attached {
    /// An [`attach_mode`] value.
    pub mode: u8,
    /// Whether a link pinned by an earlier felix was adopted.
    pub adopted: bool,
    pub holder: Holder,
}

fn hook_name(hook: TcAttachType) -> &'static str {
    match hook {
        TcAttachType::Ingress => "tc_in",
        TcAttachType::Egress => "tc_out",
        TcAttachType::Custom(_) => "tc_custom",
    }
}

/// Pin path of the link of `hook` on `iface` under `links_dir`.
pub fn link_pin(links_dir: &Path, iface: &str, hook: &str) -> PathBuf {
    links_dir.join(format!("{hook}-{iface}"))
}

/// The interface a link pin file name belongs to.
pub fn pin_iface(file_name: &str) -> Option<&str> {
    HOOKS
        .iter()
        .find_map(|hook| file_name.strip_prefix(hook)?.strip_prefix('-'))
}

/// The hook name of XDP link pins.
pub const XDP_HOOK: &str = "xdp";

/// Every hook name a link pin can carry.
pub const HOOKS: [&str; 3] = ["tc_in", "tc_out", XDP_HOOK];

/// Removes the pinned links of `iface` (which detaches them).
pub fn remove_pins(links_dir: &Path, iface: &str) {
    for hook in HOOKS {
        let _ = std::fs::remove_file(link_pin(links_dir, iface, hook));
    }
}

/// Opens the link pinned at `pin`, if any; a pin that cannot be opened is removed.
fn pinned(pin: &Path) -> Option<FdLink> {
    match PinnedLink::from_pin(pin) {
        Ok(link) => Some(FdLink::from(link)),
        Err(error) => {
            if pin.exists() {
                debug!(pin = %pin.display(), %error, "removing unusable link pin");
                let _ = std::fs::remove_file(pin);
            }
            None
        }
    }
}

/// Pins `link` at `pin`, replacing an older pin.
fn pin_link(link: FdLink, pin: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(pin);
    link.pin(pin).map(drop).map_err(|error| match error {
        aya::pin::PinError::SyscallError(e) => e.io_error,
        other => io::Error::other(other),
    })
}

/// Attaches TC `program` to `iface` at `hook`: adopts the link pinned under `links_dir` if it
/// is still live, else attaches with TCX (pinning the link) or, failing that, netlink.
pub fn attach_tc(
    program: &mut SchedClassifier,
    iface: &str,
    hook: TcAttachType,
    links_dir: &Path,
) -> Result<Attached, AttachError> {
    let hook_label = hook_name(hook);
    let pin = link_pin(links_dir, iface, hook_label);
    if let Some(link) = pinned(&pin) {
        let adopted = SchedClassifierLink::try_from(link)
            .map_err(|e| e.to_string())
            .and_then(|link| program.attach_to_link(link).map_err(|e| e.to_string()));
        match adopted {
            Ok(id) => {
                return Ok(Attached {
                    mode: attach_mode::TCX,
                    adopted: true,
                    holder: Holder::Pinned {
                        pin,
                        owned: Some(LinkId::Tc(id)),
                    },
                });
            }
            Err(error) => {
                // The interface behind the old link is gone (a recreated pod): start afresh.
                debug!(iface, hook = hook_label, %error, "pinned link not adoptable");
                let _ = std::fs::remove_file(&pin);
            }
        }
    }
    let tcx = match program.attach_with_options(
        iface,
        hook,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    ) {
        Ok(id) => {
            let holder = match program.take_link(id).map(FdLink::try_from) {
                Ok(Ok(link)) => match pin_link(link, &pin) {
                    Ok(()) => Holder::Pinned { pin, owned: None },
                    Err(error) => {
                        // Unpinned, the link died with its fd; attach again, owned.
                        warn!(iface, hook = hook_label, %error, "pinning the link failed");
                        return attach_tc_owned(program, iface, hook);
                    }
                },
                _ => return attach_tc_owned(program, iface, hook),
            };
            return Ok(Attached {
                mode: attach_mode::TCX,
                adopted: false,
                holder,
            });
        }
        Err(error) => error,
    };
    debug!(iface, hook = hook_label, %tcx, "TCX attach failed, falling back to clsact");
    // EEXIST (the qdisc is already there) is fine; any other failure shows in the attach below.
    let _ = tc::qdisc_add_clsact(iface);
    program
        .attach_with_options(iface, hook, TcAttachOptions::Netlink(NlOptions::default()))
        .map(|id| Attached {
            mode: attach_mode::NETLINK,
            adopted: false,
            holder: Holder::Owned(LinkId::Tc(id)),
        })
        .map_err(|netlink| AttachError::Tc {
            hook: hook_label,
            iface: iface.into(),
            tcx: Box::new(tcx),
            netlink: netlink.to_string(),
        })
}

/// TCX attach held by the program only (when pinning is impossible).
fn attach_tc_owned(
    program: &mut SchedClassifier,
    iface: &str,
    hook: TcAttachType,
) -> Result<Attached, AttachError> {
    program
        .attach_with_options(iface, hook, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map(|id| Attached {
            mode: attach_mode::TCX,
            adopted: false,
            holder: Holder::Owned(LinkId::Tc(id)),
        })
        .map_err(|tcx| AttachError::Tc {
            hook: hook_name(hook),
            iface: iface.into(),
            tcx: Box::new(tcx),
            netlink: "not tried".into(),
        })
}

/// Attaches the XDP program to `iface`: adopts a pinned link, else native mode, else generic.
pub fn attach_xdp(xdp: &mut Xdp, iface: &str, links_dir: &Path) -> Result<Attached, AttachError> {
    let pin = link_pin(links_dir, iface, XDP_HOOK);
    if let Some(link) = pinned(&pin) {
        match XdpLink::try_from(link)
            .map_err(|e| e.to_string())
            .and_then(|link| xdp.attach_to_link(link).map_err(|e| e.to_string()))
        {
            Ok(id) => {
                return Ok(Attached {
                    // The mode of an adopted link is not re-read; native is what felix asks for.
                    mode: attach_mode::XDP_DRIVER,
                    adopted: true,
                    holder: Holder::Pinned {
                        pin,
                        owned: Some(LinkId::Xdp(id)),
                    },
                });
            }
            Err(error) => {
                debug!(iface, %error, "pinned XDP link not adoptable");
                let _ = std::fs::remove_file(&pin);
            }
        }
    }
    let (id, mode, xdp_mode) = match xdp.attach(iface, XdpMode::Driver) {
        Ok(id) => (id, attach_mode::XDP_DRIVER, XdpMode::Driver),
        Err(native) => {
            warn!(iface, %native, "native XDP unavailable, using generic XDP");
            let id = xdp
                .attach(iface, XdpMode::Skb)
                .map_err(|source| AttachError::Xdp {
                    iface: iface.into(),
                    source: Box::new(source),
                })?;
            (id, attach_mode::XDP_SKB, XdpMode::Skb)
        }
    };
    // XDP links (bpf_link) can be pinned; a netlink XDP attachment cannot, and stays owned.
    let holder = match xdp.take_link(id).map(FdLink::try_from) {
        Ok(Ok(link)) => match pin_link(link, &pin) {
            Ok(()) => Holder::Pinned { pin, owned: None },
            Err(error) => {
                // The unpinned link was dropped (detached): attach again, in the same mode.
                warn!(iface, %error, "pinning the XDP link failed");
                let id = xdp
                    .attach(iface, xdp_mode)
                    .map_err(|source| AttachError::Xdp {
                        iface: iface.into(),
                        source: Box::new(source),
                    })?;
                Holder::Owned(LinkId::Xdp(id))
            }
        },
        _ => {
            let id = xdp
                .attach(iface, xdp_mode)
                .map_err(|source| AttachError::Xdp {
                    iface: iface.into(),
                    source: Box::new(source),
                })?;
            Holder::Owned(LinkId::Xdp(id))
        }
    };
    Ok(Attached {
        mode,
        adopted: false,
        holder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_round_trip_and_have_no_dots() {
        let dir = Path::new("/sys/fs/bpf/felix/h1/links");
        for hook in HOOKS {
            let pin = link_pin(dir, "cali0123456789a", hook);
            let name = pin.file_name().unwrap().to_str().unwrap();
            assert!(!name.contains('.'), "bpffs refuses dots: {name}");
            assert_eq!(pin_iface(name), Some("cali0123456789a"));
        }
        assert_eq!(pin_iface("felix_ct_v1"), None);
    }
}
