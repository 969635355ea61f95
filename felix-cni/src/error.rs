//! CNI errors as the spec defines them: a code, a message and optional details, printed on stdout
//! as `{"cniVersion", "code", "msg", "details"}` with a non-zero exit status.

use serde_json::{Value, json};

/// Error codes: CNI's well-known ones (spec 1.0, "Error") and ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 1: the network configuration's `cniVersion` is not one we support.
    IncompatibleVersion,
    /// 2: a field we do not support (the message names key and value).
    UnsupportedField,
    /// 4: a missing or invalid `CNI_*` environment variable (the message names it).
    InvalidEnv,
    /// 5: reading stdin failed.
    Io,
    /// 6: stdin is not a JSON object.
    Decode,
    /// 7: the network configuration is invalid.
    InvalidConfig,
    /// 11: transient (etcd unreachable, IPAM contention); the runtime should retry.
    TryAgainLater,
    /// 999: anything else felix-cni reports (netlink, IPAM exhausted, CHECK mismatch).
    Plugin,
}

impl Code {
    /// The number written in the error JSON.
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::Plugin => 999,
        }
    }
}

/// A failed command, as reported to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    /// Longer explanation (the underlying error); empty when there is none.
    pub details: String,
}

impl CniError {
    /// An error with no details.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with `details`.
    pub fn details(mut self, details: impl ToString) -> Self {
        self.details = details.to_string();
        self
    }

    /// Shorthand for [`Code::InvalidEnv`].
    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidEnv, msg)
    }

    /// Shorthand for [`Code::InvalidConfig`].
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidConfig, msg)
    }

    /// Shorthand for [`Code::Plugin`].
    pub fn plugin(msg: impl Into<String>) -> Self {
        Self::new(Code::Plugin, msg)
    }

    /// The error JSON for a caller that asked for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({
            "cniVersion": cni_version,
            "code": self.code.number(),
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_specs() {
        let codes = [
            (Code::IncompatibleVersion, 1),
            (Code::UnsupportedField, 2),
            (Code::InvalidEnv, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::TryAgainLater, 11),
            (Code::Plugin, 999),
        ];
        for (code, n) in codes {
            assert_eq!(code.number(), n, "{code:?}");
        }
    }

    #[test]
    fn error_json_has_the_specs_fields() {
        let e = CniError::env("CNI_IFNAME is missing");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 4, "msg": "CNI_IFNAME is missing"})
        );
        let e = CniError::new(Code::TryAgainLater, "etcd unreachable").details("timed out");
        assert_eq!(
            e.to_json("0.4.0"),
            json!({"cniVersion": "0.4.0", "code": 11, "msg": "etcd unreachable",
                   "details": "timed out"})
        );
    }
}
