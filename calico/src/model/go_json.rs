//! JSON as Go's `encoding/json` writes it, where serde's default differs.

use serde::Serializer;

/// Largest magnitude Go writes without an exponent (`encoding/json` switches to `e` notation at
/// 1e21); every integer below it that an f64 holds exactly is written without a fraction.
const GO_PLAIN_LIMIT: f64 = 1e21;
/// Integers beyond this are not all exact in an f64; written as floats.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// An optional `float64` as Go writes it: `1000000`, not serde's `1000000.0` (so that the stored
/// value reads back as the same JSON number in both languages' generic decoders).
pub fn serialize_opt_f64<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(f) if f.fract() == 0.0 && f.abs() < GO_PLAIN_LIMIT.min(EXACT_LIMIT) => {
            // Exact: |f| < 2^53 and integral.
            s.serialize_i64(*f as i64)
        }
        Some(f) => s.serialize_f64(*f),
        None => s.serialize_none(),
    }
}
