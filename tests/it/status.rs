//! `deploy status` against a real fleet.

use crate::support::Scenario;

#[test]
fn status_on_a_fleet_never_deployed_to() {
    let scenario = Scenario::new(2);
    let ran = scenario.json(&["status"]).expect_code(0);
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
