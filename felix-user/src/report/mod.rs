//! What felix tells others: its and its endpoints' [`status`] in etcd, and [`telemetry`]
//! (Prometheus metrics and health).

pub mod status;
pub mod telemetry;
