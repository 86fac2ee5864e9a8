//! `virtual_server fwmark N`: the service comes from keepalived.conf, the mark's
//! classification rules from rvs-fwmark.toml beside it; without them the service is left
//! out with a warning naming the file.

use std::path::Path;

use rvs_config::Protocol;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fwmark");

#[test]
fn fwmark_virtual_server_takes_the_rules_beside_it() {
    let i = rvs_keepalived::load(&Path::new(DIR).join("keepalived.conf")).expect("loads");
    assert_eq!(i.config.services.len(), 1);
    let svc = &i.config.services[0];
    assert_eq!(svc.fwmark, Some(1));
    assert_eq!(svc.persistence.map(|p| p.timeout), Some(300));
    assert_eq!(svc.reals.len(), 2);
    assert_eq!(
        svc.reals[0].port, None,
        "the packet's port is kept (IPVS: port 0)"
    );
    assert_eq!(svc.matches.len(), 1);
    assert_eq!(svc.matches[0].protocol, Some(Protocol::Tcp));
    assert_eq!(svc.matches[0].ports.len(), 2);
    assert!(
        i.files.iter().any(|f| f.ends_with("rvs-fwmark.toml")),
        "the rules file is watched for reloads like the conf: {:?}",
        i.files
    );
    assert!(i.warnings.is_empty(), "{:?}", i.warnings);
}

#[test]
fn without_rules_the_service_is_left_out_naming_the_file() {
    let text = std::fs::read_to_string(Path::new(DIR).join("keepalived.conf")).expect("conf");
    // Loaded as if from a directory without rvs-fwmark.toml.
    let i =
        rvs_keepalived::load_str(Path::new("/nonexistent/keepalived.conf"), &text).expect("loads");
    assert!(i.config.services.is_empty());
    let w = i
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        w.contains("virtual_server fwmark 1: no classification rules for mark 1")
            && w.contains("rvs-fwmark.toml"),
        "{w}"
    );
}
