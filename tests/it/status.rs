//! `deploy status` against a real fleet.

use crate::deploy;
use crate::support::Fleet;

#[test]
fn status_on_a_fleet_never_deployed_to() {
    let fleet = Fleet::start(2);
    let inventory = fleet.write_inventory("[services.app]\nbase_dir = \"app\"\n");
    let ran = deploy(&[
        "status",
        "-i",
        inventory.to_str().expect("utf-8"),
        "--output",
        "json",
    ]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document = ran.json();
    assert_eq!(document["action"], "status");
    for host in ["web1", "web2"] {
        let entry = ran.host(host);
        assert_eq!(entry["reachable"], true, "{entry:#}");
        assert_eq!(entry["live"], serde_json::Value::Null);
        assert_eq!(entry["releases"], serde_json::json!([]));
        assert_eq!(entry["lock"], serde_json::Value::Null);
        assert_eq!(entry["service"], "app");
    }
}
