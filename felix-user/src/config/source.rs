//! Where a setting's value came from, highest precedence first.

use std::fmt;

/// A configuration layer. The order of the variants is the precedence: a value from an earlier
/// layer wins over every later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A `felix run` command-line flag.
    Flag,
    /// A `FELIX_<NAME>` environment variable (the name in any case, as Calico reads them).
    Env,
    /// FelixConfiguration `node.<nodename>` in etcd.
    NodeConfig,
    /// FelixConfiguration `default` in etcd.
    DefaultConfig,
    /// felix's built-in default.
    BuiltIn,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::NodeConfig => "FelixConfiguration node.<nodename>",
            Source::DefaultConfig => "FelixConfiguration default",
            Source::BuiltIn => "built-in default",
        })
    }
}
