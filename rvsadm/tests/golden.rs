//! Golden tests: every command of every fixture recorded from the real ipvsadm 1.31 and
//! kernel IPVS (tests/fixtures, recorded with tests/fixtures/record.sh in the IPVS VM) is
//! run through rvsadm against a model of the IPVS table; stdout, stderr and the exit code
//! must be ipvsadm's byte for byte, except where the fixture documents a deliberate
//! difference (`@rvs` lines).

mod common;

fn check(name: &str) {
    let problems = common::replay_model(name);
    assert!(
        problems.is_empty(),
        "{} mismatch(es) with ipvsadm:\n\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn help() {
    check("help");
}

#[test]
fn basic() {
    check("basic");
}

#[test]
fn errors() {
    check("errors");
}

#[test]
fn popt() {
    check("popt");
}

#[test]
fn sched() {
    check("sched");
}

#[test]
fn validate() {
    check("validate");
}

#[test]
fn forward() {
    check("forward");
}

#[test]
fn sort() {
    check("sort");
}

#[test]
fn names() {
    check("names");
}

#[test]
fn restore() {
    check("restore");
}

#[test]
fn stats() {
    check("stats");
}

#[test]
fn unsupported() {
    check("unsupported");
}

#[test]
fn rvs() {
    check("rvs");
}

#[test]
fn tunnel() {
    check("tunnel");
}
