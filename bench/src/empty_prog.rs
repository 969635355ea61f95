//! The empty baseline of the per-packet figures: a TC program of two instructions (`r0 = 0;
//! exit`, i.e. TC_ACT_OK) loaded with the bpf(2) syscall and run with BPF_PROG_TEST_RUN on
//! the same frames as felix's programs. What it costs is the kernel's fixed price of a run
//! (context set-up, the call, timing), which no program can go below.

use std::{
    ffi::CStr,
    os::fd::{FromRawFd, OwnedFd, RawFd},
};

use anyhow::{Result, bail, ensure};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// `mov64 r0, 0` and `exit`.
const INSNS: [u64; 2] = [
    u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]),
    u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
];
const LICENSE: &CStr = c"GPL";

/// The first fields of `union bpf_attr` for BPF_PROG_LOAD (the rest stays zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    _rest: [u64; 12],
}

/// The `test` member of `union bpf_attr` (BPF_PROG_TEST_RUN).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// bpf(2) with `attr`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable bpf_attr prefix of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// The loaded empty program.
pub struct EmptyProgram {
    fd: OwnedFd,
}

impl EmptyProgram {
    /// Loads it (needs CAP_BPF or root).
    pub fn load() -> Result<Self> {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SCHED_CLS,
            insn_cnt: INSNS.len() as u32,
            insns: INSNS.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            ..ProgLoadAttr::default()
        };
        let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
        let fd = RawFd::try_from(fd)?;
        // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Runs it `repeat` times on `frame`: the kernel's average ns per run.
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<u64> {
        use std::os::fd::AsRawFd;
        let mut attr = TestRunAttr {
            prog_fd: u32::try_from(self.fd.as_raw_fd())?,
            data_size_in: u32::try_from(frame.len())?,
            data_in: frame.as_ptr() as u64,
            repeat,
            ..TestRunAttr::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        ensure!(
            attr.retval == 0,
            "the empty program returned {}",
            attr.retval
        );
        Ok(u64::from(attr.duration))
    }
}
