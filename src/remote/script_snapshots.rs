//! Snapshots of every program sent to a host, for fixed inputs (a base_dir with a quote and a
//! space in it), so that a change to what runs as root on production is reviewed as a diff
//! (`cargo insta review`). Each script is also checked to be valid `sh` (`sh -n`).

use super::history::{Action, HistoryRecord, RecordResult, history_command};
use super::lock::lock_script;
use super::probe::probe_script;
use super::scan::{manifest_command, scan_command};
use super::state::{self, LogAction};
use super::step::{Audit, HookEnvironment, HookPhase, ReuseMode, Step};
use super::steps::Lowering;
use crate::inventory::Version;
use crate::manifest::Sha256;

const BASE: &str = "/srv/it's my app";
const RUN: &str = "20261130T120000Z-1f";
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn version(text: &str) -> Version {
    Version::parse(text).expect("valid version")
}

fn sha256() -> Sha256 {
    Sha256::parse(SHA).expect("a sha256")
}

fn record(result: RecordResult) -> HistoryRecord {
    HistoryRecord {
        time: "2026-11-30T12:00:00Z".to_string(),
        id: RUN.to_string(),
        operator: "alice@laptop".to_string(),
        action: Action::Push,
        service: "myapp".to_string(),
        from: Some("v1".to_string()),
        to: Some("v2".to_string()),
        sha256: Some(SHA.to_string()),
        error: (result != RecordResult::Ok).then(|| "health: it's down".to_string()),
        result,
        message: None,
    }
}

fn environment() -> HookEnvironment {
    HookEnvironment {
        service: "myapp".to_string(),
        host: "web1".to_string(),
        version: version("v2"),
        previous: Some(version("v1")),
        variables: std::collections::BTreeMap::from([(
            "RAILS_ENV".to_string(),
            "production".to_string(),
        )]),
    }
}

/// Every program, by name.
fn programs() -> Vec<(&'static str, String)> {
    let shared = vec!["log".to_string(), "config/app.env".to_string()];
    let shared_files = vec!["config/secrets.yml".to_string()];
    let lowering = Lowering {
        base_dir: BASE,
        run_id: RUN,
        shared_paths: &shared,
        shared_files: &shared_files,
        now: 1_764_504_000,
        step_number: 3,
    };
    // The same steps `plan::Switch` builds: forward (its record required), back, retract.
    let audit = |result: RecordResult, required: bool| {
        Some(Audit {
            record: record(result),
            required,
        })
    };
    let lower = |step: &Step| lowering.lower(step).script;
    vec![
        ("prepare", lower(&Step::Prepare)),
        (
            "upload",
            lower(&Step::Upload {
                version: version("v2"),
                sha256: sha256(),
                bytes: 1024,
                tar_strip: 0,
            }),
        ),
        (
            "upload_strip_components",
            lower(&Step::Upload {
                version: version("v2"),
                sha256: sha256(),
                bytes: 1024,
                tar_strip: 2,
            }),
        ),
        (
            "fetch",
            lower(&Step::Fetch {
                version: version("v2"),
                sha256: sha256(),
                source: "https://example.com/app.tar.gz".to_string(),
                tar_strip: 0,
            }),
        ),
        (
            "finalize",
            lower(&Step::Finalize {
                version: version("v2"),
                sha256: sha256(),
                replace: false,
                staged_manifest: false,
            }),
        ),
        (
            "delta",
            lower(&Step::Delta {
                version: version("v2"),
                sha256: sha256(),
                base: version("v1"),
                reuse: ReuseMode::Hardlink,
                reused: std::sync::Arc::new(vec!["a b/c".to_string()]),
                sent_files: 3,
                sent_bytes: 4096,
                compress: true,
            }),
        ),
        (
            "delta_copy_uncompressed",
            lower(&Step::Delta {
                version: version("v2"),
                sha256: sha256(),
                base: version("v1"),
                reuse: ReuseMode::Copy,
                reused: std::sync::Arc::new(Vec::new()),
                sent_files: 3,
                sent_bytes: 4096,
                compress: false,
            }),
        ),
        (
            "verify",
            lower(&Step::Verify {
                version: version("v2"),
            }),
        ),
        (
            "repair",
            lower(&Step::Repair {
                version: version("v2"),
                sha256: sha256(),
                paths: std::sync::Arc::new(vec!["a b/c".to_string()]),
                compress: true,
            }),
        ),
        (
            "finalize_staged_manifest",
            lower(&Step::Finalize {
                version: version("v2"),
                sha256: sha256(),
                replace: false,
                staged_manifest: true,
            }),
        ),
        (
            "finalize_replace",
            lower(&Step::Finalize {
                version: version("v2"),
                sha256: sha256(),
                replace: true,
                staged_manifest: false,
            }),
        ),
        (
            "switch",
            lower(&Step::Switch {
                from: Some(version("v1")),
                to: version("v2"),
                action: LogAction::Push,
                record: audit(RecordResult::Ok, true),
            }),
        ),
        (
            "switch_back",
            lower(&Step::Switch {
                from: Some(version("v2")),
                to: version("v1"),
                action: LogAction::Rollback,
                record: audit(RecordResult::Failed, false),
            }),
        ),
        (
            "retract",
            lower(&Step::Retract {
                version: version("v1"),
                record: audit(RecordResult::RolledBack, false),
            }),
        ),
        (
            "prune",
            lower(&Step::Prune {
                versions: vec![version("v0"), version("v-1")],
            }),
        ),
        (
            "unlock_stale",
            lower(&Step::Unlock {
                holder: "4242 bob@ci 20261129T000000Z-2 1764400000 boot 77".to_string(),
                kill: false,
            }),
        ),
        (
            "unlock_force",
            lower(&Step::Unlock {
                holder: "4242 bob@ci 20261129T000000Z-2 1764400000 boot 77".to_string(),
                kill: true,
            }),
        ),
        (
            "hook",
            lower(&Step::Hook {
                phase: HookPhase::AfterSwitch,
                command: "systemctl restart 'myapp'".to_string(),
                environment: environment(),
            }),
        ),
        (
            "health",
            lower(&Step::Health {
                command: "curl -fsS http://127.0.0.1:8080/healthz".to_string(),
                timeout_seconds: 5,
                attempts: 3,
                environment: environment(),
            }),
        ),
        ("stop_steps", lowering.stop_steps(3)),
        ("discard_staging", lowering.discard_staging()),
        (
            "append_history",
            lowering.append_history(&record(RecordResult::Ok)),
        ),
        (
            "lock",
            lock_script(BASE, "alice@laptop", RUN, 1_764_504_000, None),
        ),
        (
            "lock_live_manifest",
            lock_script(BASE, "alice@laptop", RUN, 1_764_504_000, Some(16 << 20)),
        ),
        ("facts", state::command(BASE)),
        ("history", history_command(BASE, Some(20))),
        ("manifest", manifest_command(BASE, &version("v2"))),
        ("scan", scan_command(BASE, &version("v2"))),
        (
            "probe",
            probe_script(&[("myapp".to_string(), BASE.to_string())], true, true),
        ),
        ("exec_service", exec(Some(("myapp", BASE)), false)),
        ("exec_sudo", exec(Some(("myapp", BASE)), true)),
        ("exec_host", exec(None, false)),
        (
            "exec_record_if_deployed",
            super::exec::record_if_deployed(
                BASE,
                &lowering.append_history(&record(RecordResult::Ok)),
            ),
        ),
        (
            "freeze",
            super::freeze::freeze_script(
                BASE,
                &super::freeze::freeze_line("alice@laptop", 1_764_504_000, "incident 'x' $(id)"),
            ),
        ),
        ("thaw", super::freeze::thaw_script(BASE)),
        (
            "file_digests",
            super::files::digests_script(
                BASE,
                &["config/app.env".to_string(), "it's.yml".to_string()],
            ),
        ),
        (
            "file_receive",
            super::files::receive_script(BASE, "config/app.env", 0o640, &sha256()),
        ),
    ]
}

/// `deploy exec` on web1, in the service's live release or the login directory.
fn exec(service: Option<(&str, &str)>, sudo: bool) -> String {
    let variables = environment().variables;
    super::exec::exec_script(
        &super::exec::ExecTarget {
            service,
            host: "web1",
            run_id: RUN,
            variables: &variables,
            sudo,
            timeout_seconds: 300,
        },
        "systemctl status 'myapp' | head -n 5",
    )
}

#[test]
fn every_remote_program_is_reviewed_as_a_snapshot() {
    for (name, script) in programs() {
        insta::assert_snapshot!(name, script);
    }
}

#[test]
fn every_remote_program_is_valid_sh() {
    for (name, script) in programs() {
        let output = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "{name}: {}\n{script}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
