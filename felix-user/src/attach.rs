//! Attaching the TC programs to an interface: TCX links where the kernel has them (6.6+), a
//! netlink `clsact` filter otherwise.

use aya::programs::{
    LinkOrder, ProgramError, SchedClassifier, TcAttachType,
    tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
};
use felix_common::ifaces::attach_mode;
use tracing::debug;

/// Errors attaching a program.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Neither TCX nor netlink attachment worked.
    #[error("attach {hook} to {iface}: TCX failed ({tcx}), netlink failed ({netlink})")]
    Failed {
        hook: &'static str,
        iface: String,
        tcx: Box<ProgramError>,
        netlink: String,
    },
}

/// One attached program: how, and the id that detaches it.
#[derive(Debug)]
pub struct Attached {
    /// An [`attach_mode`] value.
    pub mode: u8,
    /// The link id owned by the program.
    pub link: SchedClassifierLinkId,
}

/// Attaches `program` to `iface` at `hook`, preferring TCX.
pub fn attach(
    program: &mut SchedClassifier,
    iface: &str,
    hook: TcAttachType,
) -> Result<Attached, AttachError> {
    let hook_name = match hook {
        TcAttachType::Ingress => "ingress",
        TcAttachType::Egress => "egress",
        TcAttachType::Custom(_) => "custom",
    };
    let tcx = match program.attach_with_options(
        iface,
        hook,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    ) {
        Ok(link) => {
            return Ok(Attached {
                mode: attach_mode::TCX,
                link,
            });
        }
        Err(error) => error,
    };
    debug!(iface, hook = hook_name, %tcx, "TCX attach failed, falling back to clsact");
    // EEXIST (the qdisc is already there) is fine; any other failure shows in the attach below.
    let _ = tc::qdisc_add_clsact(iface);
    program
        .attach_with_options(iface, hook, TcAttachOptions::Netlink(NlOptions::default()))
        .map(|link| Attached {
            mode: attach_mode::NETLINK,
            link,
        })
        .map_err(|netlink| AttachError::Failed {
            hook: hook_name,
            iface: iface.into(),
            tcx: Box::new(tcx),
            netlink: netlink.to_string(),
        })
}
