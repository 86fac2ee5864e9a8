//! Runs an XDP program on one frame through the kernel's BPF_PROG_TEST_RUN: the frame in,
//! the verdict and the frame out. Used by the packet tests and the benchmark.

use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp};

/// Outcome of one test run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpRun {
    /// The XDP action returned (XDP_PASS, XDP_TX, …).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// Mean time per run reported by the kernel, in nanoseconds.
    pub ns_per_run: u64,
}

/// The `struct xdp_md` context passed in: data at 0, data_end at the frame's length (the
/// kernel insists), and the ingress interface.
fn xdp_md(len: usize, ingress_ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

/// Runs `prog` on `frame` `repeat` times as if received on `ingress_ifindex` (0 = the
/// loopback device of the caller's network namespace).
pub fn run_xdp(
    prog: &Xdp,
    frame: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
) -> Result<XdpRun, ProgramError> {
    // Room for programs that grow the frame (encapsulation adds headers).
    let mut out = vec![0u8; frame.len() + 256];
    let ctx = xdp_md(frame.len(), ingress_ifindex);
    let ctx_in = (ingress_ifindex != 0).then_some(&ctx[..]);
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in,
        repeat: repeat.max(1),
        ..TestRunOptions::default()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok(XdpRun {
        action: result.return_value,
        frame: out,
        ns_per_run: result.duration.as_nanos() as u64,
    })
}
