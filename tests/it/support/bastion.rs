//! [`Bastion`]: an extra real sshd next to a [`Fleet`] (a jump host, or a plain sshd with
//! settings of its own such as `MaxStartups 1:100:1`). A jump host runs in its own mount
//! namespace (`unshare --mount`) with a private file bind-mounted over `/etc/hosts`, mapping
//! names such as `internal-h1` to 127.0.0.1: the controller cannot resolve those names, so a
//! connection that reaches them proves the jump was used. It logs at `VERBOSE`, so every TCP
//! login is one `Accepted publickey` line in its log ([`Bastion::connections`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    Fleet, START_TIMEOUT, accepts_tcp, config_quote, free_port, generate_key, path_str,
    public_key_of, sshd_program, terminate,
};

pub struct Bastion {
    pub name: String,
    pub port: u16,
    /// `ssh-ed25519 AAAA...` of the key it serves.
    pub host_key_public: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Bastion {
    /// Starts an sshd named `name` in the fleet's dir that lets the fleet's client key log in,
    /// forwards TCP, resolves `names` (each to 127.0.0.1) through its own `/etc/hosts`, and
    /// has `extra` lines in its sshd_config.
    pub fn start(fleet: &Fleet, name: &str, names: &[&str], extra: &str) -> Bastion {
        let dir = fleet.dir().join(name);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let key = dir.join("ssh_host_ed25519_key");
        generate_key(&key);
        let mut bastion = Bastion {
            name: name.to_string(),
            port: 0,
            host_key_public: public_key_of(&key),
            dir,
            child: None,
        };
        let authorized = bastion.dir.join("authorized_keys");
        fs::write(
            &authorized,
            format!("{}\n", public_key_of(fleet.client_key())),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", authorized.display()));
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for name in names {
            hosts.push_str(&format!("127.0.0.1 {name}\n"));
        }
        fs::write(bastion.hosts_file(), hosts).expect("write the bastion's hosts file");
        for _ in 0..3 {
            bastion.port = free_port();
            bastion.write_config(&key, &authorized, extra);
            if bastion.launch() {
                return bastion;
            }
        }
        panic!(
            "bastion {name} did not start; sshd.log:\n{}",
            bastion.sshd_log()
        );
    }

    fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn write_config(&self, key: &Path, authorized: &Path, extra: &str) {
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {pid}\n\
             AuthorizedKeysFile {authorized}\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nMaxSessions 200\n\
             LogLevel VERBOSE\n{extra}\n",
            port = self.port,
            key = config_quote(key),
            pid = config_quote(&self.dir.join("sshd.pid")),
            authorized = config_quote(authorized),
        );
        fs::write(self.config_path(), config).expect("write the bastion's sshd_config");
    }

    /// Runs sshd inside its own mount namespace with the private hosts file over /etc/hosts.
    fn launch(&mut self) -> bool {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the bastion's log");
        let script = format!(
            "mount --bind {hosts} /etc/hosts && exec {sshd} -D -e -f {config}",
            hosts = super::sh_quote(path_str(&self.hosts_file())),
            sshd = super::sh_quote(path_str(sshd_program())),
            config = super::sh_quote(path_str(&self.config_path())),
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("start unshare + sshd (the tests run as root)");
        let mut child = child;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if accepts_tcp(self.port) {
                self.child = Some(child);
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        terminate(vec![child]);
        false
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 ...`: its known_hosts line under its own name and port.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key_public)
    }

    /// `USER@127.0.0.1:PORT`, as `proxy_jump` writes it.
    pub fn jump(&self, fleet: &Fleet) -> String {
        format!("{}@127.0.0.1:{}", fleet.user(), self.port)
    }

    /// SSH connections that logged in so far (one `Accepted publickey` line each at
    /// `VERBOSE`; the start-up probe, which never sends a banner, is not one).
    pub fn connections(&self) -> usize {
        self.sshd_log().matches("Accepted publickey for ").count()
    }

    /// Stops it (and its sessions).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(vec![child]);
        }
    }

    /// Gives it a new host key and starts it again on the same port.
    pub fn rekey(&mut self, fleet: &Fleet, extra: &str) {
        self.stop();
        let key = self.dir.join("ssh_host_ed25519_key");
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(self.dir.join("ssh_host_ed25519_key.pub"));
        generate_key(&key);
        self.host_key_public = public_key_of(&key);
        let authorized = self.dir.join("authorized_keys");
        let _ = fleet;
        self.write_config(&key, &authorized, extra);
        for _ in 0..20 {
            if self.launch() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "bastion {} did not restart; log:\n{}",
            self.name,
            self.sshd_log()
        );
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        self.stop();
    }
}
