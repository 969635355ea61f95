//! Loads the real eBPF object into the kernel under a private pin tree and runs its programs
//! with BPF_PROG_TEST_RUN. Everything it pins is removed on drop, also when a test fails.

use std::{collections::BTreeMap, fs, path::PathBuf};

use aya::programs::{ProgramError, TestRun, TestRunOptions};
use felix_common::{CounterKey, CounterValue, Direction, Reason};
use felix_user::{loader::Dataplane, pins::NodePaths};

/// BPF_PROG_TEST_RUN runs TC programs on the namespace's loopback device, which is always
/// ifindex 1.
pub const TEST_RUN_IFINDEX: u32 = 1;

/// TC verdicts.
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

pub struct Harness {
    dataplane: Option<Dataplane>,
    pin_root: PathBuf,
    run_root: PathBuf,
}

/// What one run returned.
pub struct Outcome {
    pub verdict: u32,
    pub data_out: Vec<u8>,
}

impl Harness {
    /// Loads the object with its maps pinned under `/sys/fs/bpf/felix-test-<pid>-<tag>`.
    pub fn new(tag: &str) -> Self {
        let pin_root = PathBuf::from(format!(
            "/sys/fs/bpf/felix-test-{}-{tag}",
            std::process::id()
        ));
        let run_root =
            std::env::temp_dir().join(format!("felix-test-{}-{tag}", std::process::id()));
        let mut harness = Self {
            dataplane: None,
            pin_root,
            run_root,
        };
        let paths =
            NodePaths::new(&harness.pin_root, &harness.run_root, "node").expect("node paths");
        paths
            .create()
            .expect("create pin tree (needs root and bpffs at /sys/fs/bpf)");
        harness.dataplane =
            Some(Dataplane::load(&paths).expect("load and verify the eBPF programs"));
        harness
    }

    fn dataplane(&mut self) -> &mut Dataplane {
        self.dataplane.as_mut().expect("loaded in new()")
    }

    /// Runs `program` once on `frame`.
    pub fn run(&mut self, program: &'static str, frame: &[u8]) -> Outcome {
        self.try_run(program, frame).expect("BPF_PROG_TEST_RUN")
    }

    /// Runs `program` once on `frame`, returning the kernel's refusal as an error.
    pub fn try_run(
        &mut self,
        program: &'static str,
        frame: &[u8],
    ) -> Result<Outcome, ProgramError> {
        let mut out = vec![0u8; frame.len() + 256];
        let classifier = self
            .dataplane()
            .classifier(program)
            .expect("program present");
        let result = classifier.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok(Outcome {
            verdict: result.return_value,
            data_out: out,
        })
    }

    /// Every counter of the test-run interface, summed over CPUs.
    pub fn counters(&mut self) -> BTreeMap<(u16, u16), CounterValue> {
        let map = self.dataplane().counters().expect("counters map");
        let mut all = BTreeMap::new();
        for entry in map.iter() {
            let (key, per_cpu): (CounterKey, _) = entry.expect("read counter");
            if key.ifindex != TEST_RUN_IFINDEX {
                continue;
            }
            let total = per_cpu
                .iter()
                .fold(CounterValue::default(), |sum, v| CounterValue {
                    packets: sum.packets + v.packets,
                    bytes: sum.bytes + v.bytes,
                });
            all.insert((key.direction, key.reason), total);
        }
        all
    }

    /// Runs `program` on `frame` and checks the verdict and that exactly one counter moved:
    /// (`direction`, `reason`) by one packet of `frame.len()` bytes.
    pub fn expect(
        &mut self,
        program: &'static str,
        frame: &[u8],
        direction: Direction,
        reason: Reason,
        verdict: u32,
    ) -> Outcome {
        let before = self.counters();
        let outcome = self.run(program, frame);
        let after = self.counters();
        assert_eq!(
            outcome.verdict,
            verdict,
            "{program}: verdict for a packet expected to count as {}",
            reason.name()
        );
        let key = (direction as u16, reason as u16);
        let old = before.get(&key).copied().unwrap_or_default();
        let new = after.get(&key).copied().unwrap_or_default();
        assert_eq!(new.packets, old.packets + 1, "{}: packets", reason.name());
        assert_eq!(
            new.bytes,
            old.bytes + frame.len() as u64,
            "{}: bytes",
            reason.name()
        );
        for (other, value) in &after {
            if *other != key {
                assert_eq!(
                    before.get(other).copied().unwrap_or_default(),
                    *value,
                    "counter {other:?} moved, only {key:?} should have"
                );
            }
        }
        outcome
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.dataplane = None;
        let _ = fs::remove_dir_all(&self.pin_root);
        let _ = fs::remove_dir_all(&self.run_root);
    }
}
