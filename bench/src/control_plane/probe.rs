//! What felix has programmed, read from outside: its pinned endpoints map (`felix_ep_v2`:
//! ifindex -> the endpoint's ingress and egress slots) and slot map (`felix_pslot_v1`: slot
//! -> the id of the compiled set in force), and the policy state file it writes after each
//! reconcile (`<run-root>/<node>/policy.json`: per slot, its set and rules).
//!
//! A slot's set id changes in one array update, after the new set is written completely:
//! that flip is the moment a new policy is live. An endpoint moved to a new group points at
//! another slot instead; [`Live`] covers both.

use std::path::PathBuf;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData, MapError};
use felix_common::{EndpointInfo, maps, policy::NO_SLOT};
use felix_user::{
    calc::policy::{PolicyDirection, RuleRef},
    dataplane::{
        maps::open,
        pins::NodePaths,
        policy::state::{GroupState, PolicyState},
    },
};

/// One direction of an endpoint as the kernel sees it: its slot and that slot's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub slot: u32,
    pub set: u32,
}

/// Ingress and egress.
pub type Sides = [Live; 2];

/// Whether both directions point at a slot that holds a set.
pub fn programmed(sides: &Sides) -> bool {
    sides.iter().all(|l| l.slot != NO_SLOT && l.set != NO_SLOT)
}

/// Whether the state file has both directions' slots with the sets the kernel has.
pub fn state_knows(state: &PolicyState, sides: &Sides) -> bool {
    sides
        .iter()
        .all(|l| state.group(l.slot).is_some_and(|g| g.set == l.set))
}

/// The criteria (`matches`) of rule `index` of `policy` in `group`.
pub fn rule_text<'a>(group: &'a GroupState, policy: &str, index: usize) -> Option<&'a str> {
    group.entries.iter().find_map(|e| match &e.by {
        RuleRef::Policy {
            policy: p,
            index: i,
            ..
        } if p == policy && *i == index => Some(e.matches.as_str()),
        _ => None,
    })
}

/// The pinned maps and the state file of one felix.
pub struct Probe {
    endpoints: HashMap<MapData, u32, EndpointInfo>,
    slots: Array<MapData, u32>,
    state_file: PathBuf,
}

impl Probe {
    /// Opens the pinned maps (fails until felix has pinned them).
    pub fn open(paths: &NodePaths) -> Result<Self> {
        let endpoints =
            HashMap::try_from(open(paths, maps::ENDPOINTS)?).context("felix_ep_v2 layout")?;
        let slots =
            Array::try_from(open(paths, maps::POLICY_SLOTS)?).context("felix_pslot_v1 layout")?;
        Ok(Probe {
            endpoints,
            slots,
            state_file: paths.policy_state_file(),
        })
    }

    /// The endpoint on `ifindex` (two lookups per direction at most); `None` when it is not
    /// in the endpoints map.
    pub fn live(&self, ifindex: u32) -> Result<Option<Sides>> {
        let info = match self.endpoints.get(&ifindex, 0) {
            Ok(info) => info,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(e).context("read felix_ep_v2"),
        };
        let side = |slot: u32| -> Result<Live> {
            let set = if slot == NO_SLOT {
                NO_SLOT
            } else {
                self.slots.get(&slot, 0).context("read felix_pslot_v1")?
            };
            Ok(Live { slot, set })
        };
        Ok(Some([
            side(info.policy_slots[0])?,
            side(info.policy_slots[1])?,
        ]))
    }

    /// The state file as felix last wrote it.
    pub fn state(&self) -> Result<PolicyState> {
        PolicyState::load(&self.state_file)
            .with_context(|| format!("read {}", self.state_file.display()))
    }
}

/// Index of `direction` in [`Sides`].
pub fn side(direction: PolicyDirection) -> usize {
    match direction {
        PolicyDirection::Ingress => 0,
        PolicyDirection::Egress => 1,
    }
}

#[cfg(test)]
mod tests {
    use felix_user::dataplane::policy::state::{EntryState, TableSizes};

    use super::*;

    fn group(slot: u32, set: u32) -> GroupState {
        let rule = |index, matches: &str| EntryState {
            rule: 7,
            by: RuleRef::Policy {
                tier: "default".into(),
                policy: "ns-001/allow-app0-0".into(),
                direction: PolicyDirection::Ingress,
                index,
            },
            step: "allow".into(),
            matches: matches.into(),
        };
        GroupState {
            slot,
            set,
            direction: PolicyDirection::Ingress,
            policies: vec![],
            profiles: vec![],
            entries: vec![rule(0, "tcp dst port 8080,8443"), rule(1, "any")],
            default_deny_rule: 9,
            tables: TableSizes::default(),
        }
    }

    #[test]
    fn programmed_needs_slots_and_sets() {
        let live = |slot, set| Live { slot, set };
        assert!(programmed(&[live(1, 5), live(2, 6)]));
        assert!(!programmed(&[live(1, 5), live(0, 0)]));
        assert!(!programmed(&[live(1, 0), live(2, 6)]));
        let state = PolicyState {
            groups: vec![group(1, 5), group(2, 6)],
        };
        assert!(state_knows(&state, &[live(1, 5), live(2, 6)]));
        assert!(!state_knows(&state, &[live(1, 5), live(2, 7)]));
        assert!(!state_knows(&state, &[live(3, 5), live(2, 6)]));
        let g = state.group(1).expect("group");
        assert_eq!(
            rule_text(g, "ns-001/allow-app0-0", 0),
            Some("tcp dst port 8080,8443")
        );
        assert_eq!(rule_text(g, "ns-001/allow-app0-0", 2), None);
        assert_eq!(rule_text(g, "ns-002/allow-app0-0", 0), None);
        assert_eq!(side(PolicyDirection::Egress), 1);
    }
}
