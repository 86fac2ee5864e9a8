//! The rvsadm binary without rvsd: help, version and argument errors need no daemon, and
//! an unreachable rvsd is ipvsadm's "Can't initialize ipvs" with exit code 2.

use std::process::{Command, Output};

fn rvsadm(args: &[&str], env_socket: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rvsadm"));
    c.args(args).env_remove("RVS_SOCKET");
    if let Some(s) = env_socket {
        c.env("RVS_SOCKET", s);
    }
    c.output().expect("rvsadm runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn no_daemon_needed_for_help_and_bad_arguments() {
    let missing = "/nonexistent/rvsd.sock";
    let o = rvsadm(&["--socket", missing, "-h"], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stdout).contains("--socket path"),
        "{}",
        text(&o.stdout)
    );
    let o = rvsadm(&["-v"], Some(missing));
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stdout).starts_with("rvsadm v"),
        "{}",
        text(&o.stdout)
    );
    let o = rvsadm(
        &["-a", "-t", "198.18.0.10:80", "-r", "198.18.2.11", "-w", "x"],
        Some(missing),
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o.stderr), "illegal weight specified\n");
    let o = rvsadm(&["-n", "-L"], Some(missing));
    assert_eq!(o.status.code(), Some(255));
    assert!(text(&o.stderr).starts_with("Try `"), "{}", text(&o.stderr));
}

#[test]
fn unreachable_rvsd() {
    for (args, env) in [
        (vec!["--socket", "/nonexistent/rvsd.sock", "-Ln"], None),
        (
            vec!["-A", "-t", "198.18.0.10:80", "-s", "rr"],
            Some("/nonexistent/rvsd.sock"),
        ),
        (vec!["--socket=/nonexistent/rvsd.sock"], None),
    ] {
        let o = rvsadm(&args, env);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = text(&o.stderr);
        assert!(
            err.starts_with("Can't initialize ipvs: cannot reach rvsd at /nonexistent/rvsd.sock: ")
                && err.ends_with("Are you sure that rvsd is running (and that you are root)?\n"),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty());
    }
}
