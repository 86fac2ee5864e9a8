//! `rvsd --check-config`: what the daemon would run from a file, said before it runs.
//!
//! A keepalived.conf goes through the daemon's own reading ([`import_keepalived`],
//! [`map_vrrp`]); the verdict follows keepalived's `--config-test`: it fails (exit 5, as
//! keepalived's) on every complaint keepalived would make and whenever rvs would not run
//! something keepalived runs. Notes (e-mail alerts, say) do not fail it.

use std::{fmt::Write as _, path::Path};

use rvs_config::Config;
use rvs_keepalived::WarningKind;

use crate::daemon::{check_daemon_settings, import_keepalived, map_vrrp, read_config};

/// keepalived's exit status when `--config-test` finds a problem.
pub const EXIT_CONFIG: i32 = 5;

/// What `--check-config` prints and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Everything to print on stdout, each line ending in a newline.
    pub output: String,
    /// 0 when the file runs as keepalived would run it, [`EXIT_CONFIG`] otherwise.
    pub code: i32,
}

/// Checks `path` (rvs's TOML when it ends in `.toml`, a keepalived.conf otherwise); with
/// `table`, also prints the table the file builds at start in `ipvsadm -Ln` form.
pub fn check(path: &Path, table: bool) -> Verdict {
    if path.extension().is_some_and(|e| e == "toml") {
        return match read_config(path) {
            Ok(config) if !check_daemon_settings(&config.daemon).is_empty() => Verdict {
                output: check_daemon_settings(&config.daemon)
                    .iter()
                    .map(|p| format!("{}: [daemon] {p}\n", path.display()))
                    .collect(),
                code: 1,
            },
            Ok(config) => {
                let mut output = format!(
                    "{}: valid ({} services, {} real servers)\n",
                    path.display(),
                    config.services.len(),
                    reals(&config)
                );
                if table {
                    output.push_str(&listing(&config));
                }
                Verdict { output, code: 0 }
            }
            Err(e) => Verdict {
                output: format!("{e:#}\n"),
                code: 1,
            },
        };
    }
    let import = match import_keepalived(path, &[], None) {
        Ok(i) => i,
        Err(e) => {
            return Verdict {
                output: format!("{e:#}\n"),
                code: EXIT_CONFIG,
            };
        }
    };
    let mut output = String::new();
    let mut problems = 0usize;
    for w in &import.warnings {
        if w.kind == WarningKind::Problem {
            problems += 1;
        }
        let _ = writeln!(output, "{w}");
    }
    let instances = import.keepalived.vrrp_instances.len();
    match map_vrrp(&import.keepalived) {
        Ok(Some((_, warnings))) => {
            for w in warnings {
                problems += 1;
                let _ = writeln!(output, "{w}");
            }
        }
        Ok(None) => {}
        Err(e) => {
            problems += 1;
            let _ = writeln!(
                output,
                "{}: error: the VRRP instances cannot start: {e:#}",
                path.display()
            );
        }
    }
    // The table at start: real servers in or out as the health checks begin (alpha
    // servers out, sorry servers in), before any check result.
    let (state, _) =
        rvs_health::state::HealthState::new(import.health.clone(), std::time::Instant::now(), 0);
    let start = state.effective_config(&import.config);
    let summary = format!(
        "{} services, {} real servers, {} VRRP instances",
        start.services.len(),
        reals(&start),
        instances
    );
    if problems == 0 {
        let _ = writeln!(output, "{}: valid ({summary})", path.display());
    } else {
        let _ = writeln!(
            output,
            "{}: {problems} problem(s) ({summary}): keepalived --config-test fails on this file too, or rvs would not run all of it as keepalived does",
            path.display()
        );
    }
    if table {
        output.push_str(&listing(&start));
    }
    Verdict {
        output,
        code: if problems == 0 { 0 } else { EXIT_CONFIG },
    }
}

fn reals(config: &Config) -> usize {
    config.services.iter().map(|s| s.reals.len()).sum()
}

/// `ipvsadm -Ln` of `config` with zero counters, through rvsadm's own formatter.
fn listing(config: &Config) -> String {
    let list = rvsadm::exec::config_as_list(config);
    let format = rvsadm::Format {
        numeric: true,
        ..Default::default()
    };
    rvsadm::format::list_all(&list, format, &rvsadm::FileResolver::default())
}
