//! Which interface a pinned XDP bpf_link is attached to.
//!
//! aya opens pinned links but does not expose the XDP part of `bpf_link_info`, which tells
//! whether the link still holds an interface (a link whose interface went away reports
//! ifindex 0). Two bpf() commands suffice, so they are made here directly.

use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    pad: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_link_info`: type, id, prog_id, then an 8-byte aligned union whose XDP
/// member starts with the ifindex.
#[repr(C, align(8))]
struct LinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    pad: u32,
    union: [u8; 64],
}

/// `BPF_LINK_TYPE_XDP`.
const BPF_LINK_TYPE_XDP: u32 = 6;

/// The interface index of the XDP link pinned at `path`: Some(0) for a link whose
/// interface is gone, None when there is no such pinned XDP link.
pub fn pinned_xdp_ifindex(path: &Path) -> Option<u32> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut get = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        ..ObjGetAttr::default()
    };
    // SAFETY: bpf(BPF_OBJ_GET) with a valid attr of the size passed; returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &mut get as *mut ObjGetAttr,
            size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return None;
    }
    let mut info = LinkInfo {
        link_type: 0,
        id: 0,
        prog_id: 0,
        pad: 0,
        union: [0; 64],
    };
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: size_of::<LinkInfo>() as u32,
        info: &mut info as *mut LinkInfo as u64,
    };
    // SAFETY: bpf(BPF_OBJ_GET_INFO_BY_FD) writes at most info_len bytes into `info`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            size_of::<InfoAttr>(),
        )
    };
    // SAFETY: closing the fd BPF_OBJ_GET returned.
    unsafe { libc::close(fd as i32) };
    if rc < 0 || info.link_type != BPF_LINK_TYPE_XDP {
        return None;
    }
    Some(u32::from_ne_bytes([
        info.union[0],
        info.union[1],
        info.union[2],
        info.union[3],
    ]))
}
