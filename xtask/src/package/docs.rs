//! Manual pages and shell completions, generated from the command-line definitions so
//! they cannot drift: rvsd's clap `Args` (the file rvsd itself is built from), rvsadm's
//! option table read from its own `-h` text (rvsadm parses like ipvsadm, with popt, so a
//! clap description of it exists only here, for documentation), and rvs.toml(5) around
//! the commented default configuration that the package installs.

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, CommandFactory};
use clap_complete::Shell;

#[allow(dead_code, reason = "only the definition is used here, not the fields")]
#[path = "../../../rvsd/src/cli.rs"]
mod rvsd_cli;

/// roff for a paragraph of plain text (escapes what roff would take as requests).
fn roff_text(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn section(title: &str, body: &str) -> String {
    format!(".SH {title}\n{body}\n")
}

/// rvsd as clap knows it.
pub fn rvsd_command() -> clap::Command {
    rvsd_cli::Args::command()
}

/// rvsadm as a clap command, built from its `-h` option table: one option per
/// `--long [-s] [value]   help` line, continuation lines appended to the help.
pub fn rvsadm_command() -> clap::Command {
    let usage = rvsadm::usage::usage("rvsadm");
    let mut cmd = clap::Command::new("rvsadm")
        .version(env!("CARGO_PKG_VERSION"))
        .about("ipvsadm-compatible administration of the rvs load balancer (talks to rvsd)")
        .long_about(
            "rvsadm takes ipvsadm 1.31's commands, options, listings and -S/-R rules format, and \
             applies them to rvsd over its API socket. Scripts written for ipvsadm work \
             unchanged; the package can install it as the ipvsadm alternative.",
        )
        .disable_help_flag(true)
        .disable_version_flag(true);
    let mut args: Vec<Arg> = Vec::new();
    for line in usage.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            // Options and help are separated by a run of spaces; the option part may hold
            // single spaces (`--scheduler    -s scheduler`).
            let (spec, help) = split_columns(rest);
            let mut words = spec.split_whitespace();
            let Some(first) = words.next() else { continue };
            let (long, alias_short) = match first.split_once("|-") {
                Some((l, s)) => (l, s.chars().next()),
                None => (first, None),
            };
            let mut short = alias_short;
            let mut value = Vec::new();
            for w in words {
                if let Some(s) = w.strip_prefix('-').filter(|s| !s.is_empty()) {
                    short = s.chars().next();
                } else {
                    value.push(w.to_owned());
                }
            }
            let mut arg = Arg::new(long.to_owned())
                .long(long.to_owned())
                .help(help.to_owned());
            if let Some(s) = short {
                arg = arg.short(s);
            }
            arg = if value.is_empty() {
                arg.action(ArgAction::SetTrue)
            } else {
                arg.value_names(value).action(ArgAction::Set)
            };
            args.push(arg);
        } else if line.starts_with("      ")
            && let Some(last) = args.pop()
        {
            let help = format!(
                "{} {}",
                last.get_help().map(ToString::to_string).unwrap_or_default(),
                trimmed
            );
            args.push(last.help(help));
        }
    }
    for a in args {
        cmd = cmd.arg(a);
    }
    cmd
}

/// Splits `spec  help` into the option words and the help: columns are separated by
/// runs of two or more spaces, and the help is the last column (`--tcp-service|-t
/// service-address   service-address is host[:port]`).
fn split_columns(s: &str) -> (String, &str) {
    let chunks: Vec<&str> = s
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    match chunks.split_last() {
        Some((help, spec)) if !spec.is_empty() => (spec.join(" "), help),
        _ => (s.trim().to_owned(), ""),
    }
}

/// `(page name, roff)` for rvsd.8, rvsadm.8 and rvs.toml.5.
pub fn manuals(version: &str, default_config: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();

    let mut rvsd = Vec::new();
    clap_mangen::Man::new(rvsd_command())
        .section("8")
        .source(format!("rvs {version}"))
        .manual("System Administration")
        .render(&mut rvsd)
        .context("rendering rvsd.8")?;
    let mut rvsd = String::from_utf8(rvsd).context("rvsd.8 is UTF-8")?;
    rvsd += &section(
        "SIGNALS",
        &roff_text(
            "SIGHUP re-reads the configuration file and applies it as a diff: unchanged services keep\n\
             their connections and counters; a file with an error changes nothing and is logged.\n\
             SIGTERM and SIGINT stop rvsd; the XDP program stays attached and the maps pinned, so\n\
             forwarding goes on, and the next rvsd adopts them. rvsd --cleanup detaches and unpins.",
        ),
    );
    rvsd += &section(
        "STATUS PAGE AND METRICS",
        &roff_text(
            "The --metrics listener (default 127.0.0.1:9595) serves a live status page at /, its data\n\
             at /status.json and Prometheus metrics at /metrics (named and labelled as node_exporter's\n\
             IPVS collector, with the prefix rvs_ instead of node_).",
        ),
    );
    rvsd += &section(
        "FILES",
        &roff_text(
            "/etc/rvs/rvs.toml          configuration (rvs.toml(5)), rvsd.service\n\
             /etc/keepalived/keepalived.conf   run by rvsd-keepalived.service\n\
             /etc/default/rvsd          extra options for both units (RVSD_OPTS)\n\
             /run/rvs/rvsd.sock         API socket (rvsadm talks to it)\n\
             /sys/fs/bpf/rvs            pinned maps and links (the pin_path)",
        )
        .lines()
        .map(|l| format!("{l}\n.br"))
        .collect::<Vec<_>>()
        .join("\n"),
    );
    rvsd += &section(
        "SEE ALSO",
        "rvsadm(8), rvs.toml(5), rvs\\-vrrpd, keepalived.conf(5), systemd.service(5)",
    );
    out.push(("rvsd.8".to_owned(), rvsd));

    let mut rvsadm = Vec::new();
    clap_mangen::Man::new(rvsadm_command())
        .section("8")
        .source(format!("rvs {version}"))
        .manual("System Administration")
        .render(&mut rvsadm)
        .context("rendering rvsadm.8")?;
    let mut rvsadm = String::from_utf8(rvsadm).context("rvsadm.8 is UTF-8")?;
    rvsadm += &section(
        "ENVIRONMENT",
        &roff_text("RVS_SOCKET   rvsd's API socket (default /run/rvs/rvsd.sock)"),
    );
    rvsadm += &section("SEE ALSO", "ipvsadm(8), rvsd(8), rvs.toml(5)");
    out.push(("rvsadm.8".to_owned(), rvsadm));

    let toml = format!(
        ".TH RVS.TOML 5 \"\" \"rvs {version}\" \"File Formats\"\n\
         .SH NAME\nrvs.toml \\- configuration of the rvs load balancer daemon\n\
         .SH SYNOPSIS\n/etc/rvs/rvs.toml\n\
         .SH DESCRIPTION\n{}\n\
         .SH SECTIONS\n\
         .TP\n.B [daemon]\n{}\n\
         .TP\n.B [limits]\n{}\n\
         .TP\n.B [timeouts]\n{}\n\
         .TP\n.B [[service]] and [[service.real]]\n{}\n\
         .SH DEFAULT FILE\nThe file the package installs, with every setting explained:\n.PP\n.nf\n{}\n.fi\n\
         .SH SEE ALSO\nrvsd(8), rvsadm(8), ipvsadm(8)\n",
        roff_text(
            "rvsd reads its desired state from this TOML file at start and on SIGHUP (systemctl reload\n\
             rvsd). Every setting has a default; unknown keys are errors. Validate a file with\n\
             rvsd --check-config FILE."
        ),
        roff_text(
            "interfaces the XDP program is attached to, the bpffs pin_path, and xdp_mode (native or generic); they change only with a restart."
        ),
        roff_text(
            "capacities of the BPF maps (services, reals, connections, dispatch_slots), fixed when the maps are first created."
        ),
        roff_text("idle timeouts in seconds: tcp, tcp_fin, udp (as ipvsadm --set)."),
        roff_text(
            "one table per virtual service (protocol, address, port, scheduler, persistence, flags), with its real servers (address, port, weight, forward = dr, tun or nat, thresholds). The same as a sequence of ipvsadm -A and -a."
        ),
        roff_text(default_config.trim_end()),
    );
    out.push(("rvs.toml.5".to_owned(), toml));
    Ok(out)
}

/// `(installed path, script)` of the bash, zsh and fish completions of rvsd and rvsadm.
pub fn completions() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, mut cmd) in [("rvsd", rvsd_command()), ("rvsadm", rvsadm_command())] {
        for (shell, path) in [
            (
                Shell::Bash,
                format!("usr/share/bash-completion/completions/{name}"),
            ),
            (
                Shell::Zsh,
                format!("usr/share/zsh/vendor-completions/_{name}"),
            ),
            (
                Shell::Fish,
                format!("usr/share/fish/vendor_completions.d/{name}.fish"),
            ),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, name, &mut buf);
            out.push((path, String::from_utf8(buf).context("completion is UTF-8")?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rvsadm_options_come_from_its_usage_text() {
        let cmd = rvsadm_command();
        let find = |long: &str| {
            cmd.get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("no --{long}"))
        };
        assert_eq!(find("add-service").get_short(), Some('A'));
        assert_eq!(find("tcp-service").get_short(), Some('t'));
        let sched = find("scheduler");
        assert_eq!(sched.get_short(), Some('s'));
        let help = sched
            .get_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(help.contains("the default scheduler is wlc"), "{help}");
        assert_eq!(find("weight").get_short(), Some('w'));
        assert!(find("socket").get_value_names().is_some());
        assert!(find("numeric").get_value_names().is_none());
        cmd.debug_assert();
    }
}
