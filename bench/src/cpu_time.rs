//! The machine's CPU time from `/proc/stat`: busy and total jiffies of all CPUs, and what a
//! stretch of time between two samples cost.

use std::fs;

use anyhow::{Context, Result};

/// Busy and total jiffies of all CPUs since boot (`cpu` line of `/proc/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSample {
    /// Everything but idle and iowait.
    pub busy: u64,
    pub total: u64,
}

impl CpuSample {
    /// Samples `/proc/stat` now.
    pub fn now() -> Result<Self> {
        let stat = fs::read_to_string("/proc/stat").context("read /proc/stat")?;
        Self::parse(&stat).context("no `cpu` line in /proc/stat")
    }

    /// The sample in `/proc/stat`'s text: busy is all of user, nice, system, irq, softirq
    /// and steal (guest time is counted within user), that is all but idle and iowait.
    pub fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some(CpuSample {
            busy: total.saturating_sub(idle),
            total,
        })
    }

    /// What the machine did from `self` to `later`.
    pub fn until(self, later: CpuSample) -> CpuSpent {
        CpuSpent {
            busy_jiffies: later.busy.saturating_sub(self.busy),
            total_jiffies: later.total.saturating_sub(self.total),
        }
    }
}

/// The CPU time between two samples, all CPUs together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSpent {
    pub busy_jiffies: u64,
    pub total_jiffies: u64,
}

impl CpuSpent {
    /// Busy CPU seconds (all CPUs).
    pub fn busy_seconds(self) -> f64 {
        self.busy_jiffies as f64 / clock_ticks()
    }

    /// The busy share of all CPUs' time, 0 to 1 (0 when no time passed).
    pub fn busy_fraction(self) -> f64 {
        if self.total_jiffies == 0 {
            0.0
        } else {
            self.busy_jiffies as f64 / self.total_jiffies as f64
        }
    }
}

/// Jiffies per second (`_SC_CLK_TCK`, 100 if it cannot be read).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Online CPUs (at least 1).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\n";
        assert_eq!(
            CpuSample::parse(stat),
            Some(CpuSample {
                busy: 165,
                total: 1185
            })
        );
        assert_eq!(CpuSample::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuSample::parse("cpu  1 x 3 4\n"), None);
    }

    #[test]
    fn spent_between_samples() {
        let a = CpuSample {
            busy: 100,
            total: 400,
        };
        let b = CpuSample {
            busy: 295,
            total: 600,
        };
        let spent = a.until(b);
        assert_eq!(spent.busy_jiffies, 195);
        assert!((spent.busy_fraction() - 0.975).abs() < 1e-9);
        assert_eq!(b.until(a).busy_fraction(), 0.0);
    }

    #[test]
    fn this_machine_has_a_cpu_line_that_moves_forward() -> Result<()> {
        let first = CpuSample::now()?;
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let later = CpuSample::now()?;
        assert!(later.total >= first.total && later.busy >= first.busy);
        assert!(later.busy <= later.total);
        Ok(())
    }
}
