//! Authentication against real sshd: ssh-agent first, then identity files; encrypted keys take
//! their passphrase from DEPLOY_KEY_PASSPHRASE; RSA keys sign with SHA-2.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Fleet, Ran, json_command, run};

/// Generates a key of `kind` (with `passphrase`) and authorizes it on every host.
fn authorized_key(fleet: &Fleet, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let key = fleet.dir().join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", "auth-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    for host in fleet.hosts() {
        let file = host.dir().join("authorized_keys");
        let mut keys = std::fs::read_to_string(&file).expect("authorized_keys");
        keys.push_str(&public);
        std::fs::write(&file, keys).expect("write authorized_keys");
    }
    key
}

/// An inventory whose only identity file is `key` (or none).
fn inventory_with(fleet: &Fleet, key: Option<&Path>) -> PathBuf {
    let client = fleet.client_key().display().to_string();
    let files = key
        .map(|key| format!("\"{}\"", key.display()))
        .unwrap_or_default();
    let text = fleet
        .inventory_text("")
        .replace(&format!("[\"{client}\"]"), &format!("[{files}]"));
    assert!(
        !text.contains(&client),
        "the fleet key is no longer offered"
    );
    let path = fleet.dir().join("auth.toml");
    std::fs::write(&path, text).expect("write inventory");
    path
}

/// `deploy -i INVENTORY --output json check`, with `environment` set.
fn check(inventory: &Path, environment: &[(&str, &str)]) -> Ran {
    run(json_command(inventory)
        .arg("check")
        .envs(environment.iter().copied()))
}

#[test]
fn an_encrypted_key_uses_deploy_key_passphrase() {
    let fleet = Fleet::start(2);
    let key = authorized_key(&fleet, "id_locked", "ed25519", "correct horse");
    let inventory = inventory_with(&fleet, Some(&key));
    let ran = check(&inventory, &[("DEPLOY_KEY_PASSPHRASE", "correct horse")]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(!ran.stderr.contains("correct horse") && !ran.stdout.contains("correct horse"));

    let ran = check(&inventory, &[]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let error = ran.host("web1")["error"].as_str().unwrap_or("").to_string();
    assert!(error.contains("authentication as"), "{error}");
    assert!(
        error.contains("encrypted; set DEPLOY_KEY_PASSPHRASE"),
        "{error}"
    );

    let ran = check(&inventory, &[("DEPLOY_KEY_PASSPHRASE", "wrong")]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.host("web2")["error"]
            .as_str()
            .unwrap_or("")
            .contains("wrong passphrase")
    );
}

#[test]
fn the_ssh_agent_is_tried_first_and_rsa_signs_with_sha2() {
    let fleet = Fleet::start(1);
    let key = authorized_key(&fleet, "id_agent_rsa", "rsa", "");
    let socket = fleet.dir().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-a")
        .arg(&socket)
        .output()
        .expect("ssh-agent runs");
    assert!(agent.status.success(), "{agent:?}");
    let output = String::from_utf8_lossy(&agent.stdout).to_string();
    let pid = output
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("agent pid")
        .to_string();
    struct KillAgent(String);
    impl Drop for KillAgent {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(&self.0).status();
        }
    }
    let _agent = KillAgent(pid);
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("ssh-add runs");
    assert!(added.status.success(), "{added:?}");
    // No identity file at all: only the agent can authenticate. The key is RSA and OpenSSH
    // (>= 8.8) refuses SHA-1 `ssh-rsa` signatures by default, so success means rsa-sha2-*.
    let inventory = inventory_with(&fleet, None);
    let ran = run(json_command(&inventory)
        .env("SSH_AUTH_SOCK", &socket)
        .arg("check"));
    assert_eq!(ran.code, 0, "{ran:?}");
    // Without the agent the same inventory has nothing to offer, and says so.
    let ran = check(&inventory, &[]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.host("web1")["error"]
            .as_str()
            .unwrap_or("")
            .contains("tried: nothing (no ssh-agent, no identity file)"),
        "{ran:?}"
    );
}
