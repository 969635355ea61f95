//! When the uplink carries the XDP prefilter.
//!
//! Like Calico, felix attaches an XDP program only where it has something to do: the uplink's
//! prefilter drops sources on the deny list (`felix_deny_v1`), so it is attached while that list
//! has entries (and XDPEnabled is true) and detached otherwise. An idle XDP program is not free
//! on a veth uplink: while one is attached, the kernel (`veth_xdp_set`) clears the software GSO
//! features (TSO, GSO of UDP and SCTP) of the veth's peer, so every TCP super-packet the fabric
//! side sends is segmented before it crosses, and the host has to aggregate it again.

/// The uplink's XDP state, as `felix status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpState {
    /// Attached: the deny list has entries.
    Attached,
    /// Not attached: the deny list is empty.
    Idle,
    /// Not attached: XDPEnabled is false.
    Disabled,
    /// Should be attached, but attaching failed (retried every check).
    Failed,
    /// No uplink (yet), or the deny list could not be read.
    Unknown,
}

impl XdpState {
    /// The name in `felix status`.
    pub fn name(self) -> &'static str {
        match self {
            XdpState::Attached => "attached",
            XdpState::Idle => "idle",
            XdpState::Disabled => "disabled",
            XdpState::Failed => "failed",
            XdpState::Unknown => "unknown",
        }
    }
}

/// What to do with the uplink's XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    Attach,
    Detach,
    /// Leave it as it is (also when the deny list could not be read).
    Keep,
}

/// The action for the uplink given XDPEnabled, whether the deny list has entries (`None`: it
/// could not be read) and whether XDP is attached now.
pub fn decide(enabled: bool, deny_entries: Option<bool>, attached: bool) -> XdpAction {
    let want = match (enabled, deny_entries) {
        (false, _) => false,
        (true, Some(entries)) => entries,
        (true, None) => return XdpAction::Keep,
    };
    match (want, attached) {
        (true, false) => XdpAction::Attach,
        (false, true) => XdpAction::Detach,
        _ => XdpAction::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_exactly_while_enabled_and_the_deny_list_has_entries() {
        use XdpAction::*;
        // (enabled, deny entries, attached) -> action
        let cases = [
            (true, Some(false), false, Keep),
            (true, Some(false), true, Detach),
            (true, Some(true), false, Attach),
            (true, Some(true), true, Keep),
            // XDPEnabled false: never attached, whatever the list holds.
            (false, Some(true), false, Keep),
            (false, Some(true), true, Detach),
            (false, Some(false), true, Detach),
            (false, None, true, Detach),
            (false, None, false, Keep),
            // The list could not be read: no change either way.
            (true, None, false, Keep),
            (true, None, true, Keep),
        ];
        for (enabled, entries, attached, want) in cases {
            assert_eq!(
                decide(enabled, entries, attached),
                want,
                "enabled {enabled}, entries {entries:?}, attached {attached}"
            );
        }
    }

    #[test]
    fn state_names() {
        let names: Vec<_> = [
            XdpState::Attached,
            XdpState::Idle,
            XdpState::Disabled,
            XdpState::Failed,
            XdpState::Unknown,
        ]
        .iter()
        .map(|s| s.name())
        .collect();
        assert_eq!(names, ["attached", "idle", "disabled", "failed", "unknown"]);
    }
}
