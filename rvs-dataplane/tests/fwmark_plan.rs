//! The planner's fwmark classification rules (host test, no root): what the XDP program is
//! given to walk, and what is refused.

use rvs_common::{IPPROTO_TCP, MAX_MARK_RULES, SERVICE_KEY_FWMARK};
use rvs_config::{Config, Limits};
use rvs_dataplane::plan::{Planner, mark_rules};

fn config(text: &str) -> Config {
    Config::from_toml(text).expect("valid config")
}

const WEB: &str = r#"
[[service]]
fwmark = 7
scheduler = "rr"
[[service.match]]
protocol = "tcp"
destination = ["198.18.0.50/32", "198.18.0.64/28"]
ports = [{ first = 80, last = 80 }, { first = 443, last = 443 }]
[[service.real]]
address = "198.18.2.11"
"#;

#[test]
fn rules_are_flattened_in_network_order() {
    let c = config(WEB);
    let rules = mark_rules(c.services.iter()).expect("rules");
    // 2 destinations x 2 ports.
    assert_eq!(rules.len(), 4);
    let r = rules[1];
    assert_eq!(r.mark, 7);
    assert_eq!(r.proto, IPPROTO_TCP);
    assert_eq!((r.port_first, r.port_last), (443, 443));
    assert_eq!(r.dst, u32::from_ne_bytes([198, 18, 0, 50]));
    assert_eq!(r.dst_mask, u32::MAX);
    assert_eq!((r.src, r.src_mask), (0, 0), "any source");
    let net = rules[2];
    assert_eq!(net.dst_mask, u32::from_ne_bytes([255, 255, 255, 240]));
    assert!(net.matches(IPPROTO_TCP, 1, u32::from_ne_bytes([198, 18, 0, 79]), 80));
    assert!(!net.matches(IPPROTO_TCP, 1, u32::from_ne_bytes([198, 18, 0, 80]), 80));
    assert!(!net.matches(17, 1, u32::from_ne_bytes([198, 18, 0, 70]), 80));
}

#[test]
fn the_service_key_is_the_mark_and_rules_are_planned_once() {
    let c = config(WEB);
    let mut p = Planner::new(&Limits::default());
    let plan = p.plan(&c, 0).expect("plan");
    let (key, _) = plan.upsert_services[0];
    assert_eq!((key.vip, key.port, key.proto), (7, 0, 0));
    assert_eq!(key.pad, SERVICE_KEY_FWMARK);
    assert_eq!(plan.mark_rules.as_ref().map(Vec::len), Some(4));
    assert!(p.plan(&c, 1).expect("plan").is_empty(), "unchanged");
    // Removing the service empties the rules.
    let plan = p.plan(&Config::default(), 2).expect("plan");
    assert_eq!(plan.mark_rules, Some(Vec::new()));
    assert_eq!(plan.delete_services, vec![key]);
}

#[test]
fn overlapping_rules_of_different_marks_are_refused() {
    let text = format!(
        "{WEB}\n[[service]]\nfwmark = 8\nscheduler = \"rr\"\n[[service.match]]\nprotocol = \"tcp\"\ndestination = [\"198.18.0.0/24\"]\nports = [{{ first = 400, last = 500 }}]\n"
    );
    let c = config(&text);
    let e = Planner::new(&Limits::default())
        .plan(&c, 0)
        .expect_err("overlap");
    let msg = e.to_string();
    assert!(msg.contains("fwmark 7 and fwmark 8"), "{msg}");
    // Disjoint ports: accepted.
    let c = config(&text.replace("first = 400, last = 500", "first = 444, last = 500"));
    Planner::new(&Limits::default())
        .plan(&c, 0)
        .expect("disjoint");
}

#[test]
fn more_entries_than_the_walk_bound_are_refused() {
    let ports: Vec<String> = (0..=MAX_MARK_RULES)
        .map(|p| format!("{{ first = {}, last = {} }}", 1000 + p * 2, 1000 + p * 2))
        .collect();
    let text = format!(
        "[[service]]\nfwmark = 1\nscheduler = \"rr\"\n[[service.match]]\nprotocol = \"udp\"\nports = [{}]\n",
        ports.join(", ")
    );
    let e = Planner::new(&Limits::default())
        .plan(&config(&text), 0)
        .expect_err("too many");
    assert!(e.to_string().contains("walks at most 64"), "{e}");
}

#[test]
fn config_refuses_what_an_fwmark_service_cannot_be() {
    let bad = |text: &str, want: &str| {
        let e = Config::from_toml(text).expect_err(text).to_string();
        assert!(e.contains(want), "{e}");
    };
    bad("[[service]]\nfwmark = 1\n", "no match rules for mark 1");
    bad(
        "[[service]]\nfwmark = 0\n[[service.match]]\nprotocol = \"tcp\"\n",
        "fwmark 0",
    );
    bad(
        "[[service]]\nfwmark = 1\naddress = \"198.18.0.1\"\n[[service.match]]\nprotocol = \"tcp\"\n",
        "has no address or port",
    );
    bad(
        "[[service]]\nfwmark = 1\n[[service.match]]\nports = [{ first = 1, last = 2 }]\n",
        "needs a protocol",
    );
    bad(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.1\"\nport = 80\n[[service.match]]\nprotocol = \"tcp\"\n",
        "fwmark services only",
    );
    bad("[fwmark_import]\nnft = \"x.nft\"\n", "only rvsd reads");
}

#[test]
fn imported_rules_join_the_services_of_their_marks() {
    let save = "*mangle\n-A PREROUTING -d 198.18.0.50/32 -p tcp -m multiport --dports 80,443 -j MARK --set-xmark 0x7/0xffffffff\n-A PREROUTING -d 198.18.0.60/32 -p tcp -j MARK --set-mark 9\nCOMMIT\n";
    let text = "[fwmark_import]\niptables_save = \"rules.v4\"\n[[service]]\nfwmark = 7\nscheduler = \"rr\"\n[[service.real]]\naddress = \"198.18.2.11\"\n";
    let c = Config::from_toml_reading(text, |p| {
        assert_eq!(p, std::path::Path::new("rules.v4"));
        Ok(save.to_string())
    })
    .expect("imports");
    assert_eq!(c.services[0].matches.len(), 1, "mark 9 has no service");
    assert_eq!(
        c.fwmark_rules.len(),
        2,
        "both are kept for services added later"
    );
    assert_eq!(c.services[0].matches[0].ports.len(), 2);
    // A rule rvs cannot express is refused with its line.
    let e = Config::from_toml_reading(text, |_| {
        Ok("*mangle\n-A PREROUTING -i eth0 -p tcp -j MARK --set-mark 7\nCOMMIT\n".into())
    })
    .expect_err("interface match");
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn fwmark_rules_serve_services_that_bring_none() {
    let text = "[[fwmark_rule]]\nmark = 5\nprotocol = \"tcp\"\ndestination = [\"198.18.0.50/32\"]\nports = [{ first = 80, last = 80 }]\n[[service]]\nfwmark = 5\nscheduler = \"rr\"\n";
    let c = config(text);
    assert_eq!(c.services[0].matches.len(), 1);
    let rules = mark_rules(c.services.iter()).expect("rules");
    assert_eq!((rules.len(), rules[0].mark), (1, 5));
}
