//! The rendered configuration is read by the real BIRD 2 (`bird -p`, parse only; no
//! root, no network). Needs the `bird2` package (scripts/setup.sh installs it);
//! `RVS_SKIP_ROOT_TESTS=1` skips it with the lab tests.

use std::{collections::BTreeSet, net::Ipv4Addr, process::Command};

use rvs_config::bgp::BgpFile;

fn bird_parses(text: &str, name: &str) {
    let path = std::env::temp_dir().join(format!("rvs-bgp-{}-{name}.conf", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    let out = Command::new("/usr/sbin/bird")
        .args(["-p", "-c"])
        .arg(&path)
        .output()
        .expect("bird runs (install bird2: scripts/setup.sh)");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "bird -p refused the rendered config:\n{}\n{}{}",
        text,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bird_reads_every_rendered_variant() {
    if std::env::var_os("RVS_SKIP_ROOT_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped (RVS_SKIP_ROOT_TESTS=1)");
        return;
    }
    let base = "[bgp]\nlocal_as = 65001\nrouter_id = \"198.18.3.2\"\n";
    let variants = [
        (
            "plain",
            format!("{base}\n[[bgp.peer]]\naddress = \"198.18.3.1\"\nas = 65000\n"),
        ),
        (
            "full",
            format!(
                "{base}communities = [\"65001:100\", \"65001:200\"]\nnext_hop = \"198.18.3.2\"\n\n[bgp.bfd]\ninterval_ms = 50\nmultiplier = 3\n\n[[bgp.peer]]\naddress = \"198.18.3.1\"\nas = 65000\nhold_time = 3\nbfd = true\nsource = \"198.18.3.2\"\n\n[[bgp.peer]]\naddress = \"198.18.4.1\"\nas = 65002\nhold_time = 0\nbfd = true\n"
            ),
        ),
    ];
    for (name, toml) in variants {
        let bgp = BgpFile::from_toml(&toml).expect("valid");
        for announced in [
            BTreeSet::new(),
            BTreeSet::from([Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 11)]),
        ] {
            bird_parses(&rvs_bgp::bird::render(&bgp, &announced, "test.toml"), name);
        }
    }
}
