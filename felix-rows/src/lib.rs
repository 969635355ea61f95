//! The rows felix's CLI prints, as serde types shared by `felix` (which writes them) and the lab
//! and its tests (which read `--json` back), and the one text-table renderer every command uses.
//!
//! A dump's JSON document is `{"node": "<node>", "<field>": [<row>, ...]}`, the field named by
//! the command (`counters`, `interfaces`, `endpoints`, `routes`, `conntrack`, `xdp_deny`).

pub mod rows;
pub mod table;

pub use rows::{ConntrackRow, CounterRow, DenyRow, EndpointRow, IfaceRow, NatOriginRow, RouteRow};
pub use table::render as table;
