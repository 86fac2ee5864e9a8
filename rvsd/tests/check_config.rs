//! `rvsd --check-config` gives keepalived's verdict: on every file of rvs-keepalived's
//! tolerant corpus (each with keepalived 2.2.7's recorded `--config-test` exit), rvsd
//! exits 0 exactly when keepalived does, and 5 (keepalived's status) otherwise; every
//! complaint names its file and line; the summary counts VRRP instances; `--table`
//! prints the start table in `ipvsadm -Ln` form.

use std::path::{Path, PathBuf};
use std::process::Command;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rvs-keepalived/tests/tolerant"
);

fn check(file: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--check-config")
        .arg(file)
        .args(extra)
        .output()
        .expect("running rvsd --check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn recorded_exit(file: &Path) -> i32 {
    std::fs::read_to_string(file.with_extension("keepalived"))
        .expect("recorded verdict")
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("exit "))
        .and_then(|n| n.parse().ok())
        .expect("`exit N` line")
}

#[test]
fn check_config_exits_as_keepalived_config_test_does() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "only {} files", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let keepalived = recorded_exit(file);
        let (code, out) = check(file, &[]);
        let want = if keepalived == 0 { 0 } else { 5 };
        if code != want {
            wrong.push(format!(
                "{}: keepalived exits {keepalived}, rvsd {code}:\n{out}",
                file.display()
            ));
        }
        if code != 0 && !out.contains(&format!("{}:", file.display())) {
            wrong.push(format!("{}: no located complaint:\n{out}", file.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn check_config_counts_vrrp_instances_and_fails_an_instance_without_interface() {
    let (code, out) = check(&Path::new(CORPUS).join("noiface.conf"), &[]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("1 VRRP instances"), "{out}");
    assert!(out.contains("interface"), "{out}");
}

#[test]
fn check_config_table_prints_the_start_table_as_ipvsadm_ln() {
    let (code, out) = check(&Path::new(CORPUS).join("clean.conf"), &["--table"]);
    assert_eq!(code, 0, "{out}");
    let table = out.split_once('\n').map(|x| x.1).unwrap_or_default();
    assert_eq!(
        table,
        "IP Virtual Server version 1.2.1 (size=1048576)\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  198.18.0.10:80 rr\n  \
         -> 198.18.2.11:80               Route   1      0          0         \n"
    );
}

#[test]
fn a_file_whose_services_are_all_left_out_is_not_valid() {
    let dir = std::env::temp_dir().join(format!("rvsd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("fwmark.conf");
    std::fs::write(
        &file,
        "virtual_server 198.18.0.10 80 {\n    lb_algo rr\n    lb_kind DR\n    protocol SCTP\n    real_server 198.18.2.11 80 {\n        weight 1\n    }\n}\n",
    )
    .expect("write");
    let (code, out) = check(&file, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("0 services"), "{out}");
    assert!(out.contains("fwmark.conf:4:"), "{out}");
}

#[test]
fn check_config_refuses_a_pin_path_off_bpffs_and_a_bad_interface_name() {
    let dir = std::env::temp_dir().join(format!("rvsd-check-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("rvs.toml");
    std::fs::write(
        &file,
        "[daemon]\npin_path = \"/etc\"\ninterfaces = [\"eth0/../x\"]\n",
    )
    .expect("write");
    let (code, out) = check(&file, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("pin_path /etc"), "{out}");
    assert!(out.contains("eth0/../x"), "{out}");
}
