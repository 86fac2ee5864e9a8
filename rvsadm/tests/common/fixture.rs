//! Reads the golden fixtures recorded from the real ipvsadm (`tests/fixtures/*.cmds` with
//! their `*.out`, see `tests/fixtures/record.sh`) into cases to replay.

use std::path::PathBuf;

/// Where a command's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdin {
    /// Nothing (/dev/null).
    Empty,
    /// The lines given after `ARGS <<`.
    Inline(String),
    /// What an earlier `ARGS > NAME` printed.
    Kept(String),
}

/// What ipvsadm printed for a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Its exit code.
    pub rc: i32,
}

/// One ipvsadm command of a fixture, with the harness directives before it.
#[derive(Debug, Clone)]
pub struct Case {
    /// The arguments as written (shell words).
    pub line: String,
    /// Its stdin.
    pub stdin: Stdin,
    /// `> NAME`: keep its stdout under NAME.
    pub keep: Option<String>,
    /// `@learn`: take counters and connections from the recorded listing first.
    pub learn: bool,
    /// `@skip`: run it, compare nothing.
    pub skip: bool,
    /// `@rvs N`: rvsadm's exit code differs from ipvsadm's (by design).
    pub rvs_rc: Option<i32>,
    /// `@stdout`/`@|` lines: rvsadm's stdout differs (by design).
    pub rvs_stdout: Option<String>,
    /// `@stderr`/`@|` lines: rvsadm's stderr differs (by design).
    pub rvs_stderr: Option<String>,
    /// Why rvsadm differs (the text after `@rvs N`).
    pub why: Option<String>,
    /// What ipvsadm did.
    pub recorded: Recorded,
}

/// The fixtures directory.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Splits shell words (single and double quotes, backslash escapes) as `eval` would for
/// the fixtures' simple lines.
pub fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        _ => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Parses NAME.out into the recorded result of each `=== CMD` in order.
fn read_out(text: &str) -> Vec<(String, Recorded)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, Recorded)> = None;
    let mut section = "";
    for line in text.split_inclusive('\n') {
        if let Some(cmd) = line.strip_prefix("=== CMD ") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            cur = Some((cmd.trim_end_matches('\n').to_string(), Recorded::default()));
            section = "";
        } else if line.starts_with("=== SH ") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            section = "";
        } else if line == "--- stdout\n" {
            section = "stdout";
        } else if line == "--- stderr\n" {
            section = "stderr";
        } else if let Some(rc) = line.strip_prefix("--- rc ") {
            if let Some((_, r)) = cur.as_mut() {
                r.rc = rc.trim().parse().expect("rc");
            }
            section = "";
        } else if let Some((_, r)) = cur.as_mut() {
            match section {
                "stdout" => r.stdout.push_str(line),
                "stderr" => r.stderr.push_str(line),
                _ => {}
            }
        }
    }
    if let Some(c) = cur.take() {
        out.push(c);
    }
    out
}

/// Loads fixture `name` (NAME.cmds and NAME.out).
pub fn load(name: &str) -> Vec<Case> {
    let cmds = std::fs::read_to_string(dir().join(format!("{name}.cmds"))).expect("cmds");
    let out = std::fs::read_to_string(dir().join(format!("{name}.out"))).expect("out");
    let mut recorded = read_out(&out).into_iter();
    let mut cases = Vec::new();
    let mut lines = cmds.lines();
    let mut pending = Case {
        line: String::new(),
        stdin: Stdin::Empty,
        keep: None,
        learn: false,
        skip: false,
        rvs_rc: None,
        rvs_stdout: None,
        rvs_stderr: None,
        why: None,
        recorded: Recorded::default(),
    };
    let mut target: Option<&'static str> = None;
    while let Some(line) = lines.next() {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('@') {
            let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "learn" => pending.learn = true,
                "skip" => pending.skip = true,
                "rvs" => {
                    let (rc, why) = arg.split_once(' ').unwrap_or((arg, ""));
                    pending.rvs_rc = Some(rc.parse().expect("@rvs exit code"));
                    pending.why = Some(why.to_string());
                }
                "stdout" => {
                    pending.rvs_stdout = Some(String::new());
                    target = Some("stdout");
                }
                "stderr" => {
                    pending.rvs_stderr = Some(String::new());
                    target = Some("stderr");
                }
                _ if word.starts_with('|') => {
                    let text = rest[1..].strip_prefix(' ').unwrap_or(&rest[1..]);
                    let buf = match target {
                        Some("stdout") => pending.rvs_stdout.as_mut(),
                        _ => pending.rvs_stderr.as_mut(),
                    }
                    .expect("@| after @stdout or @stderr");
                    buf.push_str(text);
                    buf.push('\n');
                }
                other => panic!("unknown directive @{other} in {name}.cmds"),
            }
            continue;
        }
        let mut case = std::mem::replace(
            &mut pending,
            Case {
                line: String::new(),
                stdin: Stdin::Empty,
                keep: None,
                learn: false,
                skip: false,
                rvs_rc: None,
                rvs_stdout: None,
                rvs_stderr: None,
                why: None,
                recorded: Recorded::default(),
            },
        );
        target = None;
        let (cmd_line, rec) = recorded
            .next()
            .unwrap_or_else(|| panic!("{name}.out has fewer commands than {name}.cmds"));
        assert_eq!(cmd_line, line, "{name}.out does not match {name}.cmds");
        case.recorded = rec;
        if let Some(args) = line.strip_suffix(" <<") {
            let mut text = String::new();
            for l in lines.by_ref() {
                if l == "." {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            case.line = args.to_string();
            case.stdin = Stdin::Inline(text);
        } else if let Some((args, kept)) = line.rsplit_once(" < ") {
            case.line = args.to_string();
            case.stdin = Stdin::Kept(kept.to_string());
        } else if let Some((args, keep)) = line.rsplit_once(" > ") {
            case.line = args.to_string();
            case.keep = Some(keep.to_string());
        } else {
            case.line = line.to_string();
        }
        cases.push(case);
    }
    assert!(
        recorded.next().is_none(),
        "{name}.out has more commands than {name}.cmds"
    );
    cases
}
