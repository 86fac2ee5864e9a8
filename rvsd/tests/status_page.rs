//! The live status page in a real browser (root; Debian's chromium, headless): rvsd runs a
//! keepalived.conf in the DR lab with one real server answering and one not; the page,
//! once its script has fetched /status.json, shows the service with its scheduler, the
//! answering server up, the silent one down with its failed check, and the VRRP instance
//! as MASTER. The metrics say the same. A screenshot is kept in target/status-page.png.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, HttpResponder, Rvsd, http_get, http_get_path};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn keepalived_conf(lab: &DrLab) -> String {
    let mut c = format!(
        "vrrp_instance VI_PAGE {{\n    state BACKUP\n    interface {}\n    virtual_router_id 61\n    priority 100\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}/32 dev {}\n    }}\n}}\n\n\
         virtual_server {VIP} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    persistence_timeout 60\n",
        lab.lb_uplink(),
        lab.lb_uplink()
    );
    for rs in lab.real_servers() {
        c += &format!(
            "    real_server {} 80 {{\n        weight 2\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n",
            rs.addr()
        );
    }
    c + "}\n"
}

/// Runs headless chromium inside `ns` with the flags that keep it off the network.
fn chromium(lab: &DrLab, extra: &[&str], url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("{}-chromium", lab.prefix()));
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let mut argv = vec![
        "timeout",
        "60",
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        profile_arg.as_str(),
    ];
    argv.extend_from_slice(extra);
    argv.push(url);
    let out = lab.lb().exec(&argv);
    let _ = std::fs::remove_dir_all(&profile);
    out.expect("chromium runs (scripts/setup.sh installs it)")
}

#[test]
fn status_page_shows_services_servers_and_vrrp_in_a_browser() {
    if !rvs_lab::root_or_skip("status page browser test") {
        return;
    }
    let lab = DrLab::new(2, &[VIP]).expect("lab");
    let rs = lab.real_servers();
    // Only the first real server answers: the second one's TCP_CHECK fails.
    let _up = HttpResponder::spawn(
        rs[0].ns(),
        SocketAddr::from(([0, 0, 0, 0], 80)),
        rs[0].name(),
    )
    .expect("responder");
    let port = lab.switch_lb_port();
    let _pass = lab
        .switch()
        .run(|| PassProgram::attach(port))
        .expect("switch namespace")
        .expect("pass program");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let mut rvsd = Rvsd::start_keepalived(
        lab.lb(),
        Path::new(env!("CARGO_BIN_EXE_rvsd")),
        &keepalived_conf(&lab),
        lab.lb_uplink(),
        &pin,
    )
    .expect("rvsd starts");
    rvsd.wait_for_output(
        "VRRP: MASTER for every managed VIP",
        Duration::from_secs(15),
    )
    .expect("became MASTER");
    let vip = SocketAddr::from((VIP, 80));
    for _ in 0..10 {
        assert_eq!(
            http_get(lab.client(), vip).expect("through the VIP"),
            rs[0].name()
        );
    }
    let web = SocketAddr::from(([127, 0, 0, 1], 9595));
    // Wait until the JSON says the silent server is down and the chart has samples.
    let deadline = Instant::now() + Duration::from_secs(20);
    let down = rs[1].addr().to_string();
    loop {
        let json = http_get_path(lab.lb(), web, "/status.json").expect("status.json");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let reals = v["services"][0]["reals"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let is_down = reals
            .iter()
            .any(|r| r["address"] == down.as_str() && r["health"] == "down");
        if is_down && v["totals"].as_array().is_some_and(|t| t.len() >= 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never showed {down} down: {json}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let url = format!("http://{web}/");
    let dom = chromium(&lab, &["--virtual-time-budget=4000", "--dump-dom"], &url);
    // The script ran and filled the page from /status.json.
    assert!(
        dom.contains("data-loaded=\""),
        "the script did not render:\n{dom}"
    );
    for needle in [
        "<span class=\"svc-name\">TCP 198.18.0.10:80</span>",
        "rr · persistent 60",
        "1 of 2 up",
        "VI_PAGE",
        "<span class=\"badge MASTER\">MASTER</span>",
    ] {
        assert!(dom.contains(needle), "missing {needle:?} in:\n{dom}");
    }
    let row = |addr: &str| -> String {
        let at = dom
            .find(&format!("data-real=\"{addr}:80\""))
            .unwrap_or_else(|| panic!("no row for {addr}:\n{dom}"));
        let start = dom[..at].rfind("<tr").unwrap_or(at);
        let end = dom[at..].find("</tr>").map_or(dom.len(), |e| at + e);
        dom[start..end].to_owned()
    };
    let up_row = row(&rs[0].addr().to_string());
    assert!(up_row.starts_with("<tr class=\"real up\""), "{up_row}");
    assert!(up_row.contains("<td>2</td>"), "weight 2: {up_row}");
    assert!(
        up_row.contains("TCP_CHECK") && up_row.contains(": ok"),
        "{up_row}"
    );
    let down_row = row(&down);
    assert!(
        down_row.starts_with("<tr class=\"real down\""),
        "{down_row}"
    );
    assert!(
        down_row.contains("<span class=\"badge down\">down</span>"),
        "{down_row}"
    );
    assert!(
        down_row.contains("<td>0 (2)</td>"),
        "out of the service, weight 2 when up: {down_row}"
    );
    assert!(
        down_row.contains(">failed</span>"),
        "its last check failed: {down_row}"
    );

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/status-page.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    let _ = std::fs::remove_file(&shot);
    chromium(
        &lab,
        &[
            "--virtual-time-budget=4000",
            "--window-size=1280,720",
            shot_arg.as_str(),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());

    // The metrics agree: node_exporter's labels, the down server present at 0.
    let metrics = http_get_path(lab.lb(), web, "/metrics").expect("metrics");
    let labels = |addr: &str| {
        format!(
            "{{local_address=\"{VIP}\",local_port=\"80\",remote_address=\"{addr}\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"}}"
        )
    };
    for line in [
        format!("rvs_ipvs_backend_up{} 1", labels(&rs[0].addr().to_string())),
        format!(
            "rvs_ipvs_backend_weight{} 2",
            labels(&rs[0].addr().to_string())
        ),
        format!("rvs_ipvs_backend_up{} 0", labels(&down)),
        format!("rvs_ipvs_backend_weight{} 0", labels(&down)),
        "rvs_ipvs_connections_total 10".to_owned(),
        "rvs_vrrp_state{vrrp_instance=\"VI_PAGE\"} 2".to_owned(),
        "rvs_config_last_reload_successful 1".to_owned(),
    ] {
        assert!(metrics.contains(&line), "missing {line:?} in:\n{metrics}");
    }
    assert!(
        metrics.contains("rvs_health_transitions_total{to=\"down\"} 1"),
        "{metrics}"
    );
}
