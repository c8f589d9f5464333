//! Host-supplied text reaches the operator's terminal with its control characters escaped
//! (SPEC §5): hostile history records, lock holder lines and remote error texts, written on a
//! real host, shown by `history`, `status` and `push` with text output. JSON output carries the
//! text unchanged (serde escapes it).

use std::path::Path;

use crate::support::{Ran, Scenario, path_str};

/// Characters that must never reach the terminal raw from a host.
const RAW_CONTROLS: [char; 3] = ['\u{1b}', '\u{7}', '\r'];

/// Clears the screen, sets the window title, and returns the cursor to overwrite the line.
const HOSTILE_OPERATOR: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}mallory@evil";
const HOSTILE_ERROR: &str = "disk \u{7}full\r web1  push  ok";
const HOSTILE_MESSAGE: &str = "\u{1b}[31mall good\u{1b}[0m\r";

/// A one-host fleet with the service `app` (base_dir `app`) and v1 pushed.
fn fleet_with_v1() -> Scenario {
    let scenario = Scenario::new(1);
    let ran = scenario.push_version("v1");
    assert_eq!(ran.code, 0, "push v1: {ran:?}");
    scenario
}

fn assert_no_raw_controls(ran: &Ran) {
    for (stream, text) in [("stdout", &ran.stdout), ("stderr", &ran.stderr)] {
        for control in RAW_CONTROLS {
            assert!(
                !text.contains(control),
                "raw {control:?} on {stream}:\n{}",
                text.escape_debug()
            );
        }
    }
}

/// Appends hostile records (valid JSON, control characters in operator, error and message).
fn append_hostile_history(base: &Path) {
    let record = serde_json::json!({
        "time": "2030-01-01T00:00:00Z",
        "id": "20300101T000000Z-evil",
        "operator": HOSTILE_OPERATOR,
        "action": "push",
        "service": "app",
        "from": "v1",
        "to": "v1",
        "sha256": null,
        "result": "failed",
        "error": HOSTILE_ERROR,
        "message": HOSTILE_MESSAGE,
    });
    let mut text = std::fs::read_to_string(base.join(".deploy/history.jsonl")).expect("history");
    text.push_str(&format!("{record}\n"));
    std::fs::write(base.join(".deploy/history.jsonl"), text).expect("write history");
}

/// Leaves a lock whose holder line (no live process: the PID is above any `pid_max`) names a
/// hostile operator and run id.
fn write_hostile_lock(base: &Path) {
    let lock = base.join(".deploy/lock");
    std::fs::create_dir_all(&lock).expect("mkdir lock");
    std::fs::write(
        lock.join("holder"),
        format!("4194304 {HOSTILE_OPERATOR} run\r\u{7}1 1700000000\n"),
    )
    .expect("write holder");
}

#[test]
fn history_text_shows_hostile_records_escaped() {
    let scenario = fleet_with_v1();
    let base = scenario.app(0);
    append_hostile_history(&base);
    let ran = scenario.text(&["history"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_no_raw_controls(&ran);
    assert!(
        ran.stdout
            .contains("\\x1b[2J\\x1b]0;pwned\\x07mallory@evil"),
        "operator escaped:\n{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("disk \\x07full\\r web1  push  ok"),
        "error escaped:\n{}",
        ran.stdout
    );
    // JSON output carries the host's text as it is (serde escapes it): unchanged.
    let ran = scenario.json(&["history"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let entries = ran.host("web1")["entries"].clone();
    assert_eq!(entries[0]["operator"], HOSTILE_OPERATOR, "{entries:#}");
    assert_eq!(entries[0]["error"], HOSTILE_ERROR, "{entries:#}");
}

#[test]
fn status_text_shows_a_hostile_lock_holder_escaped() {
    let scenario = fleet_with_v1();
    let base = scenario.app(0);
    append_hostile_history(&base);
    write_hostile_lock(&base);
    let ran = scenario.text(&["status"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_no_raw_controls(&ran);
    assert!(
        ran.stdout
            .contains("\\x1b[2J\\x1b]0;pwned\\x07mallory@evil (run run\\r\\x071"),
        "lock holder escaped:\n{}",
        ran.stdout
    );
    let ran = scenario.json(&["status"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let lock = ran.host("web1")["lock"].clone();
    assert_eq!(lock["operator"], HOSTILE_OPERATOR, "{lock:#}");
    assert_eq!(lock["run_id"], "run\r\u{7}1", "{lock:#}");
}

#[test]
fn a_hostile_remote_error_is_escaped_in_progress_lines_and_the_summary() {
    let scenario = Scenario::new(1).service(
        r#"
[services.app.hooks]
before_switch = ['printf "refused\033]0;pwned\007\033[2J\rweb1  ok\n" >&2; exit 3']
"#,
    );
    let artifact = scenario.versioned_artifact("v1");
    let ran = scenario
        .text(&["push", "--version", "v1", "--artifact", path_str(&artifact)])
        .expect_code(1);
    assert_no_raw_controls(&ran);
    let escaped = "refused\\x1b]0;pwned\\x07\\x1b[2J\\rweb1  ok";
    assert!(
        ran.stdout.contains(escaped),
        "summary table:\n{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains(escaped),
        "progress lines:\n{}",
        ran.stderr
    );
}
