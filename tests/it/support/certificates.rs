//! OpenSSH certificates for the test fleet: certificate authorities made with `ssh-keygen`,
//! certificate-only hosts (sshd `HostCertificate` + `TrustedUserCAKeys`, an empty
//! `AuthorizedKeysFile`), user certificates beside the client key, and a real `ssh-agent`
//! (killed by PID on drop) holding a key with its certificate.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Fleet, path_str};

/// A certificate authority: an ed25519 key pair in the fleet's directory.
pub struct Authority {
    key: PathBuf,
}

impl Authority {
    pub fn new(dir: &Path, name: &str) -> Authority {
        let key = dir.join(name);
        keygen(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key),
        );
        Authority { key }
    }

    /// `ssh-ed25519 AAAA...` (no comment), as on a `@cert-authority` or `@revoked` line.
    pub fn public_key(&self) -> String {
        let path = public_path(&self.key);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("could not read {}: {error}", path.display()));
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn public_key_path(&self) -> PathBuf {
        public_path(&self.key)
    }

    /// Signs the private key `key`'s public half (`<key>.pub`) into `<key>-cert.pub`: a host
    /// certificate when `host`, else a user certificate; `principals` comma-separated,
    /// `validity` as `ssh-keygen -V` takes it (`always:forever`, `20200101:20200102`...).
    pub fn sign(&self, key: &Path, host: bool, principals: &str, validity: &str) -> PathBuf {
        let mut command = Command::new("ssh-keygen");
        command.arg("-q").arg("-s").arg(&self.key).args([
            "-I",
            "deploy-test",
            "-n",
            principals,
            "-V",
            validity,
        ]);
        if host {
            command.arg("-h");
        }
        keygen(command.arg(public_path(key)));
        let mut name = key.as_os_str().to_os_string();
        name.push("-cert.pub");
        PathBuf::from(name)
    }
}

/// Makes host `index` certificate-only: its host key signed by `host_authority` (for
/// `principals`, valid `validity`), users admitted only with a certificate of `user_authority`
/// (its `authorized_keys` is an empty file). Restarts the host.
pub fn certificate_only(
    fleet: &mut Fleet,
    index: usize,
    host_authority: &Authority,
    user_authority: &Authority,
    principals: &str,
    validity: &str,
) {
    let host_dir = fleet.host(index).dir().to_path_buf();
    let certificate = host_authority.sign(
        &host_dir.join("ssh_host_ed25519_key"),
        true,
        principals,
        validity,
    );
    let empty = host_dir.join("no_authorized_keys");
    fs::write(&empty, "").expect("write an empty authorized_keys");
    fleet.configure(
        index,
        &format!(
            "HostCertificate {}\nTrustedUserCAKeys {}\nAuthorizedKeysFile {}\n",
            path_str(&certificate),
            path_str(&user_authority.public_key_path()),
            path_str(&empty),
        ),
    );
}

/// A real `ssh-agent` listening on a socket in `dir`, killed (by PID) on drop.
pub struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    pub fn start(dir: &Path, name: &str) -> Agent {
        let socket = dir.join(format!("{name}.sock"));
        let _ = fs::remove_file(&socket);
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent runs (install openssh-client)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create {}",
                socket.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
        Agent { child, socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ssh-add KEY`: the key, and its `<KEY>-cert.pub` when there is one.
    pub fn add(&self, key: &Path) {
        let output = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("ssh-add runs");
        assert!(
            output.status.success(),
            "ssh-add {} failed: {}",
            key.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `ssh-add -l`: one line per identity the agent holds.
    pub fn listing(&self) -> String {
        let output = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .expect("ssh-add runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn public_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

fn keygen(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs (install openssh-client)");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
