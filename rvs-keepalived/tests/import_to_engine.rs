//! The path rvsd takes with a keepalived.conf: `check_file` → `HealthEngine::spawn` → the
//! effective configuration follows a real TCP listener (loopback, no root) that is closed
//! and reopened.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use rvs_checkers::{ChangeAction, HealthEngine};

#[test]
fn a_keepalived_conf_drives_the_health_engine() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = std::env::temp_dir().join(format!("rvs-ka-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server 127.0.0.10 {port} {{\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n    delay_loop 0.5\n    real_server 127.0.0.1 {port} {{\n        weight 3\n        TCP_CHECK {{\n            connect_timeout 0.5\n            retry 0\n            warmup 0\n        }}\n    }}\n    real_server 127.0.0.2 {port} {{\n        weight 1\n    }}\n}}\n"
        ),
    )
    .expect("write");
    let (config, health, warnings) = rvs_keepalived::check_file(&conf).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let handle = HealthEngine::spawn(config, health).expect("engine");
        let mut changes = handle.subscribe();
        assert_eq!(handle.config().borrow().services[0].reals.len(), 2);
        drop(listener);
        let c = tokio::time::timeout(Duration::from_secs(3), changes.recv())
            .await
            .expect("in time")
            .expect("change");
        assert_eq!(
            (c.real.address, c.action),
            (Ipv4Addr::LOCALHOST, ChangeAction::Removed)
        );
        assert!(c.reason.contains("Connection refused"), "{c}");
        assert_eq!(handle.config().borrow().services[0].reals.len(), 1);
        let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("rebind");
        let c = tokio::time::timeout(Duration::from_secs(3), changes.recv())
            .await
            .expect("in time")
            .expect("change");
        assert_eq!(c.action, ChangeAction::Restored { weight: 3 });
        handle.shutdown().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
