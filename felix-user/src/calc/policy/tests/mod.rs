//! Policy tests that span the calculation, the compiler and the reference evaluator.

/// Random programs: compiled tables against entry-by-entry evaluation.
mod compile;
/// Cached programs through random changes against a fresh calculation.
mod incremental;
/// Named ports: resolution per side, protocol and endpoint, and the compiled verdicts.
mod named_ports;
/// Namespaced NetworkSets: labels from their namespace profile, incrementally.
mod network_sets;
/// Random Calico worlds: calculation + compiled tables against the reference evaluator.
mod random;
/// Large worlds (bench-shaped cluster, 10k-selector and 50k-/32 policies), and a timing harness.
mod scale;
/// The semantics table (`tests/policy-cases/`) through the calculation and the compiled tables.
mod semantics;
