//! `bird-conf`: Calico's confd for this dataplane.
//!
//! It will watch the node's BGP resources in etcd (nodes, bgpconfigurations, bgppeers, ippools,
//! block affinities), render BIRD 2's configuration from templates kept in this crate, validate
//! it with `bird -p -c`, install it atomically and reload BIRD with `birdc configure`. Until that
//! work lands it only says so.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "bird-conf is not implemented yet: it will render BIRD's config from Calico's etcd state \
         (see the bird-conf issue)"
    );
    ExitCode::FAILURE
}
