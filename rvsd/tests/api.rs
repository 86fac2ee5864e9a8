//! The management API against a real rvsd (root): every bad request gets a clear error
//! and leaves the state unchanged; good batches apply atomically.

use std::{net::Ipv4Addr, path::PathBuf};

use hyper::Method;
use rvs_api::{Client, ClientError, ErrorKind, Op};
use rvs_config::{Config, Protocol, RealServer, Scheduler, VirtualService};
use rvs_lab::{Netns, Rvsd};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

struct Env {
    rvsd: Rvsd,
    _ns: Netns,
}

fn start() -> Env {
    let ns = Netns::new(&format!("{}-api", rvs_lab::unique_prefix())).expect("netns");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", ns.name()));
    let config = format!("[daemon]\npin_path = \"{}\"\n", pin.display());
    let rvsd = Rvsd::start(
        &ns,
        std::path::Path::new(env!("CARGO_BIN_EXE_rvsd")),
        &config,
        &pin,
    )
    .expect("rvsd starts");
    Env { rvsd, _ns: ns }
}

fn service(port: u16) -> VirtualService {
    VirtualService::new(Protocol::Tcp, Ipv4Addr::new(198, 18, 0, 10), port)
}

fn api_kind(r: Result<impl std::fmt::Debug, ClientError>) -> (ErrorKind, String) {
    match r {
        Err(ClientError::Api(e)) => (e.kind, e.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    if !rvs_lab::root_or_skip("API test") {
        return;
    }
    let env = start();
    let client = Client::new(env.rvsd.socket());
    runtime().block_on(async {
        let id = service(80).id();
        client
            .apply(vec![
                Op::AddService { service: service(80) },
                Op::AddReal {
                    service: id,
                    real: RealServer::new(Ipv4Addr::new(198, 18, 2, 11)),
                },
            ])
            .await
            .expect("good batch");
        let before: Config = client
            .request::<(), _>(Method::GET, "/v1/config", None)
            .await
            .expect("config");

        // Malformed JSON, unknown fields, unknown ops, unknown routes.
        let raw = |method: Method, path: &'static str, body: &'static str| {
            let client = client.clone();
            async move { client.raw(method, path, body.as_bytes().to_vec()).await.expect("answer") }
        };
        for (body, needle) in [
            ("{\"ops\": [", "invalid JSON body"),
            ("{\"ops\": [], \"extra\": 1}", "unknown field `extra`"),
            ("{\"ops\": [{\"op\": \"explode\"}]}", "unknown variant `explode`"),
            (
                "{\"ops\": [{\"op\": \"add_service\", \"service\": {\"protocol\": \"tcp\", \"address\": \"198.18.0.10\", \"port\": 70000}}]}",
                "invalid value",
            ),
            (
                "{\"ops\": [{\"op\": \"add_service\", \"service\": {\"protocol\": \"tcp\", \"address\": \"198.18.0.10\", \"port\": 81, \"scheduler\": \"xyz\"}}]}",
                "unknown variant `xyz`",
            ),
        ] {
            let (status, answer) = raw(Method::POST, "/v1/ops", body).await;
            let text = String::from_utf8_lossy(&answer);
            assert_eq!(status, 400, "{body} → {text}");
            assert!(text.contains("bad_request") && text.contains(needle), "{body} → {text}");
        }
        let (status, answer) = raw(Method::DELETE, "/v1/everything", "").await;
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&answer));

        // Semantically wrong batches: the failing op is named, earlier ops are undone.
        let (kind, msg) = api_kind(
            client
                .apply(vec![
                    Op::AddService { service: service(81) },
                    Op::AddService { service: service(80) },
                ])
                .await,
        );
        assert_eq!(kind, ErrorKind::ServiceExists, "{msg}");
        let mut heavy = RealServer::new(Ipv4Addr::new(198, 18, 2, 12));
        heavy.weight = 2_147_483_648;
        let (kind, msg) = api_kind(client.apply(vec![Op::AddReal { service: id, real: heavy }]).await);
        assert_eq!(kind, ErrorKind::Invalid);
        assert!(msg.contains("weights are 0..=2147483647"), "{msg}");
        // lblcr runs in the data path (no scheduler is refused any more): the edit is taken.
        client
            .apply(vec![Op::EditService {
                service: VirtualService {
                    scheduler: Scheduler::Lblcr,
                    ..service(80)
                },
            }])
            .await
            .expect("lblcr is accepted");
        let listed = client.services().await.expect("services");
        assert_eq!(listed.services[0].service.scheduler, Scheduler::Lblcr);
        client
            .apply(vec![Op::EditService {
                service: service(80),
            }])
            .await
            .expect("back to the scheduler it had");
        let (kind, _) = api_kind(
            client
                .apply(vec![Op::DeleteReal {
                    service: id,
                    address: Ipv4Addr::new(198, 18, 2, 99),
                    port: None,
                }])
                .await,
        );
        assert_eq!(kind, ErrorKind::NoReal);

        let after: Config = client
            .request::<(), _>(Method::GET, "/v1/config", None)
            .await
            .expect("config");
        assert_eq!(before, after, "refused requests changed the state");
        let listed = client.services().await.expect("services");
        assert_eq!(listed.services.len(), 1);
        assert_eq!(listed.services[0].reals.len(), 1);
    });
}
