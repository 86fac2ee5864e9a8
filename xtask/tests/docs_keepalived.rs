//! Every keepalived.conf shown to users passes keepalived's own `--config-test` (root):
//! each fenced block of README.md and docs/*.md that holds a top-level keepalived block
//! is written to a file and checked by Debian's keepalived inside a throwaway network
//! namespace with a dummy interface for every name the block uses.

use std::path::{Path, PathBuf};

use rvs_lab::Netns;

/// Top-level keywords that make a block a keepalived.conf.
const KEYWORDS: &[&str] = &[
    "global_defs",
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "virtual_server",
    "virtual_server_group",
];

/// `(file, first line, text)` of every fenced block in `md`.
fn fenced_blocks(path: &Path) -> Vec<(PathBuf, usize, String)> {
    let text = std::fs::read_to_string(path).expect("read markdown");
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some((start, body)) => out.push((path.to_owned(), start, body)),
                None => current = Some((n + 2, String::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            // Fences inside list items are indented; keepalived does not mind either way.
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn is_keepalived(block: &str) -> bool {
    block.lines().any(|l| {
        let first = l.split_whitespace().next().unwrap_or("");
        KEYWORDS.contains(&first) && !l.contains('=')
    })
}

/// Interface names a block refers to: `interface X`, `dev X`, `track_interface { X ... }`.
fn interfaces(block: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_track = false;
    for line in block.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2) {
            if w[0] == "interface" || w[0] == "dev" {
                names.push(w[1].to_owned());
            }
        }
        if words.first() == Some(&"track_interface") {
            // `track_interface { eth1 eth2 }` on one line, or one name a line after it.
            let inline: Vec<&str> = words
                .iter()
                .skip(1)
                .filter(|w| !["{", "}"].contains(w))
                .copied()
                .collect();
            names.extend(inline.iter().map(|w| (*w).to_owned()));
            in_track = !words.contains(&"}");
            continue;
        }
        if in_track {
            if words.contains(&"}") {
                in_track = false;
            } else if let Some(name) = words.first() {
                names.push((*name).to_owned());
            }
        }
    }
    names.retain(|n| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_keepalived_conf_in_the_docs_passes_keepalived_config_test() {
    if !rvs_lab::root_or_skip("keepalived --config-test of the docs") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let blocks: Vec<_> = files
        .iter()
        .flat_map(|f| fenced_blocks(f))
        .filter(|(_, _, b)| is_keepalived(b))
        .collect();
    assert!(
        blocks.len() >= 2,
        "found only {} keepalived.conf blocks",
        blocks.len()
    );
    let prefix = rvs_lab::unique_prefix();
    let ns = Netns::new(&format!("{prefix}-kc")).expect("namespace");
    let mut failures = Vec::new();
    for (i, (file, line, block)) in blocks.iter().enumerate() {
        for (j, name) in interfaces(block).iter().enumerate() {
            if ns.exec(&["ip", "link", "show", name]).is_err() {
                // A dummy where the kernel has the module, else one end of a veth pair.
                let peer = format!("kcpeer{i}x{j}");
                ns.exec(&["ip", "link", "add", name, "type", "dummy"])
                    .or_else(|_| {
                        ns.exec(&[
                            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
                        ])
                    })
                    .expect("an interface");
                ns.exec(&["ip", "link", "set", name, "up"])
                    .expect("interface up");
            }
        }
        let conf = std::env::temp_dir().join(format!("{prefix}-block{i}.conf"));
        std::fs::write(&conf, block).expect("write block");
        let conf_arg = conf.display().to_string();
        let result = ns.exec(&[
            "timeout",
            "20",
            "keepalived",
            "--config-test",
            "-f",
            &conf_arg,
        ]);
        let _ = std::fs::remove_file(&conf);
        let shown = format!(
            "{}:{line}",
            file.strip_prefix(&root).unwrap_or(file).display()
        );
        match result {
            Ok(_) => println!("{shown}: keepalived --config-test passes"),
            Err(e) => failures.push(format!("{shown}: {e:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "keepalived refuses {} of {} blocks:\n{}",
        failures.len(),
        blocks.len(),
        failures.join("\n\n")
    );
}

#[test]
fn finds_blocks_and_interface_names() {
    let block = "vrrp_instance VI_1 {\n    interface eth0\n    track_interface {\n        eth1\n    }\n    virtual_ipaddress {\n        198.18.0.10/32 dev eth2\n    }\n}\n";
    assert!(is_keepalived(block));
    assert_eq!(interfaces(block), ["eth0", "eth1", "eth2"]);
    assert!(!is_keepalived("[[instance]]\nvrrp_version = 2\n"));
    assert_eq!(
        interfaces("track_interface { eth1 eth2 }\n"),
        ["eth1", "eth2"]
    );
}
