//! Paths are handled safely: `--cleanup --pin-path` removes nothing outside bpffs,
//! `--socket` never replaces a file that is not a socket nor changes its directory's
//! mode, and `--cleanup` puts back the forwarding sysctls rvsd turned on.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvsd-paths-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

#[test]
fn cleanup_outside_bpffs_removes_nothing() {
    let dir = tmp("cleanup");
    let precious = dir.join("RVS_SERVICES");
    std::fs::write(&precious, "not a pin").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["--cleanup", "--pin-path"])
        .arg(&dir)
        .output()
        .expect("rvsd --cleanup");
    let kept = precious.exists();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(kept, "rvsd --cleanup deleted a file outside bpffs");
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("not on a bpffs mount"), "{text}");
}

#[test]
fn socket_never_replaces_a_file_nor_changes_its_directory_mode() {
    let dir = tmp("socket");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = dir.join("rvsd.sock");
    std::fs::write(&file, "someone's data").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["--metrics", "off", "--socket"])
        .arg(&file)
        .output()
        .expect("rvsd");
    let kept = std::fs::read_to_string(&file).ok();
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert_eq!(kept.as_deref(), Some("someone's data"), "{text}");
    assert_eq!(mode, 0o755, "the directory's mode is the operator's");
    assert!(text.contains("is not a socket"), "{text}");
}

#[test]
fn cleanup_restores_the_forwarding_sysctls_rvsd_turned_on() {
    if !rvs_lab::root_or_skip("cleanup_restores_the_forwarding_sysctls_rvsd_turned_on") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-fw")).expect("netns");
    ns.exec(&[
        "ip", "link", "add", "fw0", "type", "veth", "peer", "name", "fw1",
    ])
    .expect("veth");
    ns.exec(&["ip", "link", "set", "fw0", "up"]).expect("up");
    ns.exec(&["ip", "link", "set", "fw1", "up"]).expect("up");
    let sysctl = "/proc/sys/net/ipv4/conf/fw0/forwarding";
    let forwarding = || {
        ns.exec(&["cat", sysctl])
            .expect("read sysctl")
            .trim()
            .to_owned()
    };
    ns.exec(&["sh", "-c", &format!("echo 0 > {sysctl}")])
        .expect("forwarding off");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-fw"));
    let config = format!(
        "[daemon]\ninterfaces = [\"fw0\"]\npin_path = \"{}\"\n",
        pin.display()
    );
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvsd"));
    let rvsd = rvs_lab::Rvsd::start(&ns, &bin, &config, &pin).expect("rvsd starts");
    assert_eq!(
        forwarding(),
        "1",
        "rvsd turns forwarding on for the FIB lookup"
    );
    // Stops rvsd (its cleanup runs in the host's namespace, which is not fw0's).
    drop(rvsd);
    let out = ns
        .run(|| {
            Command::new(&bin)
                .args(["--cleanup", "--pin-path"])
                .arg(&pin)
                .output()
        })
        .expect("in the namespace")
        .expect("rvsd --cleanup");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(forwarding(), "0", "{out:?}");
}
