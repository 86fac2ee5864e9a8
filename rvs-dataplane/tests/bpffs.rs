//! bpffs is mounted by rvs itself (mount(2)), not by running `mount`: in a private mount
//! namespace with /sys/fs/bpf unmounted and no PATH, `ensure_bpffs` mounts it (root).
//! Alone in its test binary: it clears PATH for the process.

use std::fs;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

fn bpffs_mounted() -> bool {
    fs::read_to_string("/proc/thread-self/mounts")
        .expect("mounts")
        .lines()
        .any(|l| {
            let mut f = l.split_whitespace();
            f.nth(1) == Some("/sys/fs/bpf") && f.next() == Some("bpf")
        })
}

#[test]
fn bpffs_is_mounted_without_a_mount_binary() {
    if !rvs_lab::root_or_skip("bpffs mount test") {
        return;
    }
    // A thread of its own: the mount namespace it unshares ends with it.
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).expect("unshare mount ns");
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("make / private");
        while bpffs_mounted() {
            umount2("/sys/fs/bpf", MntFlags::MNT_DETACH).expect("unmount bpffs");
        }
        // SAFETY: this test binary runs this one test; nothing else reads the environment.
        unsafe { std::env::set_var("PATH", "") };
        rvs_dataplane::ensure_bpffs().expect("ensure_bpffs with no PATH");
        assert!(bpffs_mounted(), "bpffs mounted");
        // Idempotent once mounted.
        rvs_dataplane::ensure_bpffs().expect("second call");
    })
    .join()
    .expect("test thread");
}
