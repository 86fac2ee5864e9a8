//! fwmark rules imported from what the real tools print (root): mangle rules created with
//! iptables and nft in a throwaway namespace, their `iptables-save` / `nft list ruleset`
//! output read by `[fwmark_import]` through `rvsd --check-config`, and the rules rvs cannot
//! express refused with their line.

use std::{path::Path, process::Command};

use rvs_config::{Config, Protocol, fwmark::Prefix};
use rvs_lab::Netns;

fn check(file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--check-config")
        .arg(file)
        .arg("--table")
        .output()
        .expect("running rvsd --check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

const TOML: &str = "[[service]]\nfwmark = 1\nscheduler = \"rr\"\n[[service.real]]\naddress = \"198.18.2.11\"\n[[service]]\nfwmark = 2\nscheduler = \"rr\"\n[[service.real]]\naddress = \"198.18.2.12\"\n";

fn prefix(s: &str) -> Prefix {
    s.parse().expect("prefix")
}

#[test]
fn iptables_save_and_nft_output_import() {
    if !rvs_lab::root_or_skip("fwmark import from the real iptables and nft") {
        return;
    }
    let ns = Netns::new(&format!("{}-mark", rvs_lab::unique_prefix())).expect("netns");
    let dir = tempfile_dir(ns.name());
    for rule in [
        "-d 198.18.0.10/32 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 1",
        "-d 198.18.0.64/28 -s 198.19.0.0/16 -p udp --dport 5000:5010 -j MARK --set-mark 0x2",
    ] {
        let mut argv = vec!["iptables", "-t", "mangle", "-A", "PREROUTING"];
        argv.extend(rule.split(' '));
        ns.exec(&argv).expect("iptables");
    }
    let save = ns
        .exec(&["iptables-save", "-t", "mangle"])
        .expect("iptables-save");
    std::fs::write(dir.join("rules.v4"), &save).expect("write");
    // iptables here may be iptables-nft, whose rules `nft list ruleset` shows too.
    ns.exec(&["iptables", "-t", "mangle", "-F"])
        .expect("iptables -F");
    for cmd in [
        "add table ip rvs",
        "add chain ip rvs pre { type filter hook prerouting priority mangle; }",
        "add rule ip rvs pre ip daddr 198.18.0.10 tcp dport { 80, 443 } meta mark set 1",
        "add rule ip rvs pre ip daddr 198.18.0.64/28 ip saddr 198.19.0.0/16 udp dport 5000-5010 meta mark set 0x00000002",
    ] {
        let mut argv = vec!["nft"];
        argv.extend(cmd.split(' '));
        ns.exec(&argv).expect("nft");
    }
    let ruleset = ns
        .exec(&["nft", "list", "ruleset"])
        .expect("nft list ruleset");
    std::fs::write(dir.join("rules.nft"), &ruleset).expect("write");

    for (key, file) in [("iptables_save", "rules.v4"), ("nft", "rules.nft")] {
        let toml = format!("[fwmark_import]\n{key} = \"{file}\"\n{TOML}");
        let path = dir.join(format!("{key}.toml"));
        std::fs::write(&path, &toml).expect("write");
        let (code, out) = check(&path);
        assert_eq!(code, 0, "{key}: {out}\n--- input\n{save}\n{ruleset}");
        assert!(
            out.contains("FWM  1 rr") && out.contains("FWM  2 rr"),
            "{out}"
        );
        // What was imported, rule by rule (the file read as rvsd reads it).
        let c = Config::from_toml_reading(&toml, |p| std::fs::read_to_string(dir.join(p)))
            .expect("imports");
        let (one, two) = (&c.services[0].matches, &c.services[1].matches);
        assert_eq!(one.len(), 1, "{key}: {one:?}");
        assert_eq!(one[0].protocol, Some(Protocol::Tcp));
        assert_eq!(one[0].destination, vec![prefix("198.18.0.10/32")]);
        let ports: Vec<(u16, u16)> = one[0].ports.iter().map(|p| (p.first, p.last)).collect();
        assert_eq!(ports, vec![(80, 80), (443, 443)], "{key}");
        assert_eq!(two.len(), 1, "{key}: {two:?}");
        assert_eq!(two[0].protocol, Some(Protocol::Udp));
        assert_eq!(two[0].destination, vec![prefix("198.18.0.64/28")]);
        assert_eq!(two[0].source, vec![prefix("198.19.0.0/16")]);
        assert_eq!((two[0].ports[0].first, two[0].ports[0].last), (5000, 5010));
    }

    // An interface match cannot be expressed at XDP: refused, naming the rule.
    ns.exec(&[
        "iptables",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-i",
        "lo",
        "-p",
        "tcp",
        "-j",
        "MARK",
        "--set-mark",
        "1",
    ])
    .expect("iptables");
    let save = ns
        .exec(&["iptables-save", "-t", "mangle"])
        .expect("iptables-save");
    std::fs::write(dir.join("rules.v4"), &save).expect("write");
    let (code, out) = check(&dir.join("iptables_save.toml"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("-i lo"), "the refused rule is named: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A private directory for the files (removed at the end of the test).
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rvs-fwmark-{name}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
