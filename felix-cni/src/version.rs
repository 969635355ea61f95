//! The CNI versions felix-cni speaks and what differs between them.

use serde_json::{Value, json};

use crate::error::{CniError, Code};

/// Versions accepted in `cniVersion`; results are written in the caller's version.
pub const SUPPORTED: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// The version used when the caller gave none (VERSION without config, early errors).
pub const CURRENT: &str = "1.0.0";

/// Refuses a version we do not speak (code 1).
pub fn check(version: &str) -> Result<(), CniError> {
    if SUPPORTED.contains(&version) {
        Ok(())
    } else {
        Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "cniVersion {version:?} is not supported (supported: {})",
                SUPPORTED.join(", ")
            ),
        ))
    }
}

/// Whether CHECK exists in `version` (0.4.0 and later).
pub fn has_check(version: &str) -> bool {
    !version.starts_with("0.3.")
}

/// Whether a result's `ips` carry `"version": "4"` (before 1.0.0).
pub fn ips_carry_version(version: &str) -> bool {
    version.starts_with("0.")
}

/// The VERSION command's answer.
pub fn version_info(requested: &str) -> Value {
    json!({"cniVersion": requested, "supportedVersions": SUPPORTED})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for v in SUPPORTED {
            check(v).unwrap();
        }
        let e = check("0.2.0").unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.msg.contains("0.2.0") && e.msg.contains("1.0.0"), "{e}");
        assert_eq!(check("1.1.0").unwrap_err().code.number(), 1);
        assert!(!has_check("0.3.1"));
        assert!(has_check("0.4.0") && has_check("1.0.0"));
        assert!(ips_carry_version("0.4.0") && !ips_carry_version("1.0.0"));
        assert_eq!(
            version_info("1.0.0"),
            json!({"cniVersion": "1.0.0",
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]})
        );
    }
}
