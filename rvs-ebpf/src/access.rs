//! The one bounds-checked accessor of packet memory: every read and write of the frame goes
//! through [`ptr_at`], which the verifier can follow (start + offset + size ≤ end).

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

/// Returns a pointer to a `T` at `offset` if the whole `T` lies inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// [`ptr_at`] whose check LLVM cannot fold into an earlier, wider one: the verifier only
/// knows the bounds of the register a check was made on, so a check LLVM drops as
/// "implied" leaves a pointer the verifier refuses. For paths that re-read bytes after
/// checking farther ones (moving a header).
#[inline(always)]
pub fn ptr_at_fresh<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = core::hint::black_box(ctx.data());
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Reads a big-endian u16 at `offset`.
#[inline(always)]
pub fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    Some(u16::from_be_bytes(unsafe { *p }))
}

/// Reads a memory-order u16 at `offset` (checksums, ports).
#[inline(always)]
pub fn read_ne16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    Some(u16::from_ne_bytes(unsafe { *p }))
}

/// Writes a memory-order u16 at `offset`.
#[inline(always)]
pub fn write_ne16(ctx: &XdpContext, offset: usize, v: u16) -> Option<()> {
    let p = ptr_at::<[u8; 2]>(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe { *p = v.to_ne_bytes() };
    Some(())
}

/// Writes a memory-order u32 at `offset`.
#[inline(always)]
pub fn write_ne32(ctx: &XdpContext, offset: usize, v: u32) -> Option<()> {
    let p = ptr_at::<[u8; 4]>(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe { *p = v.to_ne_bytes() };
    Some(())
}
