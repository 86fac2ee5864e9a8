//! Shared by the golden and lab tests: the fixtures recorded from the real ipvsadm and the
//! IPVS model used to replay them without root.
#![allow(dead_code)]

pub mod fixture;
pub mod model;

use std::io::Cursor;

use fixture::{Case, Stdin};
use rvsadm::{Api, FileResolver, Outcome};

/// The resolver that answers from the fixtures' hosts and services files, the same files
/// the VM had as /etc/hosts and /etc/services when the fixtures were recorded.
pub fn fixture_resolver() -> FileResolver {
    let dir = fixture::dir();
    FileResolver::new(
        &std::fs::read_to_string(dir.join("hosts")).expect("hosts"),
        &std::fs::read_to_string(dir.join("services")).expect("services"),
    )
}

/// What rvsadm must print for `case`: ipvsadm's recording, except where the fixture says
/// rvsadm differs on purpose (`@rvs`, `@stdout`, `@stderr`), and except ipvsadm's version
/// line and rvsadm's extra options in `-h`.
pub fn expected(case: &Case) -> Outcome {
    let r = &case.recorded;
    let mut stdout = r.stdout.clone();
    if let Some(rest) =
        stdout.strip_prefix("ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n")
    {
        let usage = !rest.is_empty();
        stdout = rvsadm::usage::version() + rest;
        if usage {
            stdout.push_str(rvsadm::usage::RVSADM_OPTIONS);
        }
    }
    Outcome {
        stdout: case.rvs_stdout.clone().unwrap_or(stdout),
        stderr: case.rvs_stderr.clone().unwrap_or_else(|| r.stderr.clone()),
        code: case.rvs_rc.unwrap_or(r.rc),
    }
}

/// Replays every case of fixture `name` through `run` (given the case's argv with
/// `argv[0]` = "ipvsadm" and its stdin) and returns the mismatches, described.
pub fn replay(
    name: &str,
    mut run: impl FnMut(&Case, &[String], &[u8]) -> Outcome,
    mut before: impl FnMut(&Case, &[String]),
) -> Vec<String> {
    let mut kept = std::collections::HashMap::new();
    let mut problems = Vec::new();
    for (index, case) in fixture::load(name).into_iter().enumerate() {
        let argv: Vec<String> = std::iter::once("ipvsadm".to_string())
            .chain(fixture::shell_words(&case.line))
            .collect();
        let stdin: Vec<u8> = match &case.stdin {
            Stdin::Empty => Vec::new(),
            Stdin::Inline(t) => t.clone().into_bytes(),
            Stdin::Kept(k) => kept
                .get(k)
                .cloned()
                .unwrap_or_else(|| panic!("nothing kept as {k}")),
        };
        before(&case, &argv);
        let got = run(&case, &argv, &stdin);
        if let Some(k) = &case.keep {
            kept.insert(k.clone(), got.stdout.clone().into_bytes());
        }
        if case.skip {
            continue;
        }
        let want = expected(&case);
        if got != want {
            problems.push(format!(
                "{name} #{index}: `ipvsadm {}`{}\n--- want (rc {})\n{}{}--- got (rc {})\n{}{}",
                case.line,
                case.why
                    .as_deref()
                    .map(|w| format!(" [{w}]"))
                    .unwrap_or_default(),
                want.code,
                want.stdout,
                prefix_err(&want.stderr),
                got.code,
                got.stdout,
                prefix_err(&got.stderr),
            ));
        }
    }
    problems
}

fn prefix_err(s: &str) -> String {
    s.lines().map(|l| format!("stderr: {l}\n")).collect()
}

/// Replays fixture `name` against the IPVS model.
pub fn replay_model(name: &str) -> Vec<String> {
    let resolver = fixture_resolver();
    let model = std::cell::RefCell::new(model::Model::default());
    replay(
        name,
        |_, argv, stdin| {
            let mut m = model.borrow_mut();
            rvsadm::run(
                argv,
                false,
                &mut *m as &mut dyn Api,
                &resolver,
                &mut Cursor::new(stdin),
            )
        },
        |case, argv| {
            if case.learn {
                model::learn(
                    &mut model.borrow_mut(),
                    argv,
                    &case.recorded.stdout,
                    &resolver,
                );
            }
        },
    )
}
