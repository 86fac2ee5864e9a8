//! fwmark services through the API's JSON: added with their mark and match rules, named
//! afterwards as `{"fwmark": N}`.

use rvs_api::Op;
use rvs_config::VirtualService;

#[test]
fn fwmark_services_in_ops() {
    let ops: Vec<Op> = serde_json::from_str(
        r#"[
          {"op": "add_service", "service": {"fwmark": 1, "scheduler": "rr",
            "match": [{"protocol": "tcp", "destination": ["198.18.0.10/32"],
                       "ports": [{"first": 80, "last": 80}, {"first": 443, "last": 443}]}]}},
          {"op": "add_real", "service": {"fwmark": 1}, "real": {"address": "198.18.2.11"}},
          {"op": "delete_service", "service": {"fwmark": 1}}
        ]"#,
    )
    .expect("ops parse");
    let id = VirtualService::fwmark(1).id();
    match &ops[0] {
        Op::AddService { service } => {
            assert_eq!(service.fwmark, Some(1));
            assert_eq!(service.matches[0].ports.len(), 2);
            assert_eq!(service.id(), id);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&ops[1], Op::AddReal { service, .. } if *service == id));
    assert!(matches!(&ops[2], Op::DeleteService { service } if *service == id));
    // Unknown fields are still refused.
    let bad = serde_json::from_str::<Op>(
        r#"{"op": "delete_service", "service": {"fwmark": 1, "port": 80}}"#,
    );
    assert!(bad.is_err(), "{bad:?}");
}
