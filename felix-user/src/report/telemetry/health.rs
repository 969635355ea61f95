//! Liveness (the agent's loop still turns) and readiness (the datastore is in sync and the
//! dataplane was programmed from it).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{http::StatusCode, response::IntoResponse};

use crate::report::status::Report;

/// How long the agent's loop may go without a turn before felix is reported dead.
pub const LIVENESS_DEADLINE: Duration = Duration::from_secs(30);

/// The time of the agent loop's last turn, shared with the health endpoint.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Heartbeat {
    /// Records a turn of the loop now.
    pub fn beat(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    /// Time since the last turn (`None` before the first).
    pub fn age(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(now_ms().saturating_sub(at))),
        }
    }
}

/// A health answer: fine or not, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: String,
}

/// Live when the loop turned within [`LIVENESS_DEADLINE`].
pub fn liveness(heartbeat: &Heartbeat) -> Verdict {
    match heartbeat.age() {
        None => Verdict {
            ok: false,
            reason: "the agent loop has not started".into(),
        },
        Some(age) if age > LIVENESS_DEADLINE => Verdict {
            ok: false,
            reason: format!("the agent loop last turned {} s ago", age.as_secs()),
        },
        Some(age) => Verdict {
            ok: true,
            reason: format!("the agent loop turned {} ms ago", age.as_millis()),
        },
    }
}

/// Ready when the datastore is in sync and the maps were programmed from it.
pub fn readiness(report: &Report) -> Verdict {
    let reason = match (report.datastore.sync.in_sync, report.ready) {
        (true, true) => {
            return Verdict {
                ok: true,
                reason: "in sync with the datastore; dataplane programmed".into(),
            };
        }
        (false, _) => format!(
            "not in sync with the datastore{}",
            report
                .datastore
                .sync
                .last_error
                .as_ref()
                .map_or_else(String::new, |e| format!(": {e}"))
        ),
        (true, false) => "the dataplane has not been programmed yet".into(),
    };
    Verdict { ok: false, reason }
}

/// 200 or 503 with the reason as text.
pub fn respond(verdict: Verdict) -> impl IntoResponse {
    let code = if verdict.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", verdict.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_heartbeat() {
        let beat = Heartbeat::default();
        assert!(!liveness(&beat).ok);
        beat.beat();
        assert!(liveness(&beat).ok);
        beat.0.store(now_ms() - 31_000, Ordering::Relaxed);
        let v = liveness(&beat);
        assert!(!v.ok);
        assert!(v.reason.contains("31 s ago"), "{}", v.reason);
    }

    #[test]
    fn readiness_needs_sync_and_programming() {
        let mut report = Report::default();
        assert!(!readiness(&report).ok);
        report.datastore.sync.in_sync = true;
        assert_eq!(
            readiness(&report).reason,
            "the dataplane has not been programmed yet"
        );
        report.ready = true;
        assert!(readiness(&report).ok);
        report.datastore.sync.in_sync = false;
        report.datastore.sync.last_error = Some("connection refused".into());
        assert_eq!(
            readiness(&report).reason,
            "not in sync with the datastore: connection refused"
        );
    }
}
