//! BPF_PROG_TEST_RUN of the real programs: the caller loads the object (its own loader, under
//! a [`PinTree`] of its own) and hands a loaded program here with a frame; back come the
//! verdict, the output frame and the kernel's time per run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::programs::{ProgramError, TestRun, TestRunOptions, TestRunResult};

/// BPF_PROG_TEST_RUN runs TC programs on the namespace's loopback device (ifindex 1) unless the
/// context names another.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// TC verdicts.
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// Offsets of `mark`, `ingress_ifindex` and `ifindex` in `struct __sk_buff`.
const SKB_MARK_OFFSET: usize = 8;
const SKB_INGRESS_IFINDEX_OFFSET: usize = 36;
const SKB_IFINDEX_OFFSET: usize = 40;
/// Offsets of `gso_segs` and `gso_size` in `struct __sk_buff`.
const SKB_GSO_SEGS_OFFSET: usize = 164;
const SKB_GSO_SIZE_OFFSET: usize = 176;
const SKB_CTX_LEN: usize = 192;
/// Room the output buffer has beyond the input frame (encapsulation grows it).
const OUTPUT_HEADROOM: usize = 256;

/// Where a test packet enters: the interface, a GSO segment size (0: not GSO), the skb's mark
/// and the interface it entered the host by (`skb->skb_iif`; 0: sent by the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct On {
    pub ifindex: u32,
    pub gso_size: u32,
    pub mark: u32,
    pub ingress_ifindex: u32,
}

impl On {
    pub const fn iface(ifindex: u32) -> Self {
        Self {
            ifindex,
            gso_size: 0,
            mark: 0,
            ingress_ifindex: 0,
        }
    }

    /// The same, with the skb's mark set to `mark`.
    pub const fn marked(self, mark: u32) -> Self {
        Self { mark, ..self }
    }

    /// The same, for a packet that entered the host by `ifindex` (a forwarded packet).
    pub const fn entered_by(self, ifindex: u32) -> Self {
        Self {
            ingress_ifindex: ifindex,
            ..self
        }
    }

    /// The `struct __sk_buff` context for a frame of `frame_len` bytes.
    fn skb_ctx(self, frame_len: usize) -> [u8; SKB_CTX_LEN] {
        let mut ctx = [0u8; SKB_CTX_LEN];
        ctx[SKB_IFINDEX_OFFSET..SKB_IFINDEX_OFFSET + 4]
            .copy_from_slice(&self.ifindex.to_ne_bytes());
        ctx[SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4].copy_from_slice(&self.mark.to_ne_bytes());
        ctx[SKB_INGRESS_IFINDEX_OFFSET..SKB_INGRESS_IFINDEX_OFFSET + 4]
            .copy_from_slice(&self.ingress_ifindex.to_ne_bytes());
        if self.gso_size != 0 {
            let segs = (frame_len as u32).div_ceil(self.gso_size);
            ctx[SKB_GSO_SEGS_OFFSET..SKB_GSO_SEGS_OFFSET + 4].copy_from_slice(&segs.to_ne_bytes());
            ctx[SKB_GSO_SIZE_OFFSET..SKB_GSO_SIZE_OFFSET + 4]
                .copy_from_slice(&self.gso_size.to_ne_bytes());
        }
        ctx
    }
}

/// How to run a program on a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// The TC context (ingress interface, GSO); `None`: no context (the kernel's default,
    /// loopback) and no XDP context.
    pub on: Option<On>,
    /// BPF_PROG_TEST_RUN's repeat (the verdict is the last run's; the time the average).
    pub repeat: u32,
    /// Whether to collect the output frame.
    pub output: bool,
}

impl RunOptions {
    /// One run entering on `on`, with the output frame.
    pub const fn once_on(on: On) -> Self {
        Self {
            on: Some(on),
            repeat: 1,
            output: true,
        }
    }
}

/// The outcome of one BPF_PROG_TEST_RUN call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: u32,
    /// The frame as the program left it (empty unless asked for).
    pub data_out: Vec<u8>,
    /// The kernel's average time per run.
    pub duration: Duration,
    /// The skb's mark after the run (0 without a context).
    pub mark: u32,
}

/// Runs `program` (a loaded TC or XDP program) on `frame` as `options` say.
pub fn run<P>(program: &P, frame: &[u8], options: RunOptions) -> Result<Outcome, ProgramError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let ctx = options.on.map(|on| on.skb_ctx(frame.len()));
    let mut ctx_out = [0u8; SKB_CTX_LEN];
    let mut out = vec![
        0u8;
        if options.output {
            frame.len() + OUTPUT_HEADROOM
        } else {
            0
        }
    ];
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: options.output.then_some(&mut out[..]),
        ctx_in: ctx.as_ref().map(|c| &c[..]),
        ctx_out: ctx.is_some().then_some(&mut ctx_out[..]),
        repeat: options.repeat,
        ..TestRunOptions::default()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok(Outcome {
        verdict: result.return_value,
        data_out: out,
        duration: result.duration,
        mark: u32::from_ne_bytes([
            ctx_out[SKB_MARK_OFFSET],
            ctx_out[SKB_MARK_OFFSET + 1],
            ctx_out[SKB_MARK_OFFSET + 2],
            ctx_out[SKB_MARK_OFFSET + 3],
        ]),
    })
}

/// A private pin tree under `/sys/fs/bpf` and a run folder under the temporary directory, both
/// named `<prefix>-<pid>-<tag>`, for the caller to load the object under; removed on drop
/// (unlinking the pins releases the maps and links).
#[derive(Debug)]
pub struct PinTree {
    pub pin_root: PathBuf,
    pub run_root: PathBuf,
}

impl PinTree {
    /// The paths for `<prefix>-<pid>-<tag>` (nothing is created: the loader does that).
    pub fn new(prefix: &str, tag: &str) -> Self {
        let name = format!("{prefix}-{}-{tag}", std::process::id());
        Self {
            pin_root: Path::new("/sys/fs/bpf").join(&name),
            run_root: std::env::temp_dir().join(&name),
        }
    }
}

impl Drop for PinTree {
    fn drop(&mut self) {
        for dir in [&self.pin_root, &self.run_root] {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    eprintln!("warning: remove {}: {e}", dir.display());
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skb_ctx_carries_ifindex_and_gso() {
        let ctx = On::iface(7).skb_ctx(100);
        assert_eq!(&ctx[40..44], &7u32.to_ne_bytes());
        assert!(ctx[164..].iter().all(|&b| b == 0));
        let marked = On::iface(7).marked(0x100).entered_by(9).skb_ctx(100);
        assert_eq!(&marked[8..12], &0x100u32.to_ne_bytes());
        assert_eq!(&marked[36..40], &9u32.to_ne_bytes());
        let gso = On {
            gso_size: 40,
            ..On::iface(3)
        }
        .skb_ctx(100);
        assert_eq!(&gso[164..168], &3u32.to_ne_bytes());
        assert_eq!(&gso[176..180], &40u32.to_ne_bytes());
    }

    #[test]
    fn pin_tree_names_carry_the_pid() {
        let tree = PinTree::new("testkit", "x");
        let name = format!("testkit-{}-x", std::process::id());
        assert_eq!(tree.pin_root, Path::new("/sys/fs/bpf").join(&name));
        assert_eq!(tree.run_root, std::env::temp_dir().join(&name));
    }
}
