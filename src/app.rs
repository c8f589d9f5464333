//! The run context shared by every command, and the fleet runner.
//!
//! Owns: turning the global flags and the inventory into a `Context` (selected hosts, run id,
//! operator, one SSH `Connector`), the typed `InputError` (exit code 2: nothing was contacted),
//! the Ctrl-C / SIGTERM flag, and `for_each` — the one way work fans out over hosts: at most
//! `concurrency` at once, every host's outcome a value, none able to abort the others.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::watch;

use crate::cli::{Format, Global};
use crate::inventory::{self, Inventory};
use crate::report::ProgressMode;
use crate::ssh::{Connector, Endpoint};

/// Bad usage, inventory or artifact: reported before any host is contacted (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

impl From<inventory::InventoryError> for InputError {
    fn from(error: inventory::InventoryError) -> Self {
        InputError(error.to_string())
    }
}

/// One (service, host) pair a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub service: usize,
    pub host: usize,
}

pub struct Context {
    pub inventory: Inventory,
    /// Selected hosts (indexes into `inventory.hosts`), in inventory order.
    pub selected: Vec<usize>,
    pub concurrency: usize,
    pub json: bool,
    pub progress: ProgressMode,
    pub run_id: String,
    pub operator: String,
    pub connector: Arc<Connector>,
    /// Every inventory host's resolved connection settings (ssh_config read once per run).
    pub endpoints: Vec<Endpoint>,
    pub interrupted: watch::Receiver<bool>,
    /// Why this run happens (`--message` / `DEPLOY_MESSAGE`): in its history records and
    /// webhook events.
    pub message: Option<String>,
    /// The webhook's start event of this run, in flight (`commands::webhook`).
    pub webhook_start: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Context {
    /// Refuses (exit 2, before any connection) a run whose connections do not fit under the
    /// open-file `limit` (see `limits`): every selected host when `holds_every_host`, else at
    /// most `concurrency` of them. A host reached through a ProxyCommand costs the child's three
    /// pipes instead of a socket.
    pub fn check_open_files(&self, limit: u64, holds_every_host: bool) -> Result<(), InputError> {
        let hosts = self.selected.len();
        let held = if holds_every_host {
            hosts
        } else {
            hosts.min(self.concurrency)
        };
        let per_host = if self
            .selected
            .iter()
            .any(|&host| matches!(self.endpoints[host].route, crate::ssh::Route::Command(_)))
        {
            3
        } else {
            1
        };
        let needed = crate::limits::descriptors_needed(held * per_host, self.concurrency);
        match crate::limits::shortfall(needed, limit, held) {
            Some(problem) => Err(InputError(problem)),
            None => Ok(()),
        }
    }

    pub fn new(global: &Global, interrupted: watch::Receiver<bool>) -> Result<Context, InputError> {
        let inventory = inventory::load(&global.inventory)?;
        let selected = inventory
            .select_hosts(global.hosts.as_deref())
            .map_err(InputError)?;
        let concurrency = global
            .concurrency
            .map(|value| value as usize)
            .unwrap_or(inventory.deploy.concurrency)
            .max(1);
        let endpoints = crate::ssh::resolve_endpoints(&inventory).map_err(InputError)?;
        let connector = Arc::new(Connector::new(concurrency));
        crate::report::show_results_on_stderr(global.output != Format::Json);
        Ok(Context {
            inventory,
            selected,
            concurrency,
            json: global.output == Format::Json,
            progress: ProgressMode::choose(
                global.no_progress,
                global.verbose,
                global.quiet,
                global.log_format == Format::Json,
            ),
            run_id: run_id(),
            operator: operator(),
            connector,
            endpoints,
            interrupted,
            message: None,
            webhook_start: std::sync::Mutex::new(None),
        })
    }

    pub fn endpoint(&self, host: usize) -> Endpoint {
        self.endpoints[host].clone()
    }

    /// Reads the selected hosts' identity files now, so that a passphrase prompt comes before
    /// any progress display (only when bars will be drawn on a terminal).
    pub async fn unlock_identities(&self) {
        if self.progress == ProgressMode::Bars {
            let selected: Vec<Endpoint> = self
                .selected
                .iter()
                .map(|&host| self.endpoint(host))
                .collect();
            self.connector.unlock_identities(&selected).await;
        }
    }

    /// Services named on the command line (all when none is named), as indexes.
    pub fn services(&self, names: &[String]) -> Result<Vec<usize>, InputError> {
        if self.inventory.services.is_empty() {
            return Err(InputError(format!(
                "{}: no [services.*] defined",
                self.inventory.file.display()
            )));
        }
        if names.is_empty() {
            return Ok((0..self.inventory.services.len()).collect());
        }
        names
            .iter()
            .map(|name| {
                self.inventory
                    .services
                    .iter()
                    .position(|service| &service.name == name)
                    .ok_or_else(|| {
                        let known = self
                            .inventory
                            .services
                            .iter()
                            .map(|service| service.name.as_str());
                        InputError(format!(
                            "no service named `{name}` in {}{}",
                            self.inventory.file.display(),
                            crate::suggest::hint(name, known)
                        ))
                    })
            })
            .collect()
    }

    /// The (service, host) pairs: each service's hosts that are also selected.
    pub fn targets(&self, services: &[usize]) -> Result<Vec<Target>, InputError> {
        let mut targets = Vec::new();
        for &service in services {
            for &host in &self.inventory.services[service].hosts {
                if self.selected.contains(&host) {
                    targets.push(Target { service, host });
                }
            }
        }
        if targets.is_empty() {
            return Err(InputError(
                "the host selection is empty: no selected host runs the selected services"
                    .to_string(),
            ));
        }
        Ok(targets)
    }

    /// "web1" or "web1/myapp" when several services are involved.
    pub fn label(&self, target: Target, with_service: bool) -> String {
        let host = &self.inventory.hosts[target.host].name;
        if with_service {
            format!("{host}/{}", self.inventory.services[target.service].name)
        } else {
            host.clone()
        }
    }

    pub fn is_interrupted(&self) -> bool {
        *self.interrupted.borrow()
    }
}

/// Runs `work` on every item, at most `concurrency` at once, and returns the outcomes in item
/// order. A slow or failing item never delays starting the others beyond the limit.
pub async fn for_each<T, R, F, Fut>(items: Vec<T>, concurrency: usize, work: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R>,
{
    let mut outcomes: Vec<(usize, R)> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| {
            let future = work(item);
            async move { (index, future.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    outcomes.sort_by_key(|(index, _)| *index);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}

/// A run id that sorts by time and is unique per controller process:
/// `YYYYMMDDTHHMMSSZ-<pid hex>`.
pub fn run_id() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:x}", std::process::id())
}

/// `user@controller`, restricted to characters safe in a lock file's space-separated line.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".to_string());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let clean = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect()
    };
    format!("{}@{}", clean(&user), clean(&host))
}

/// The login name of this process's real uid, from /proc and /etc/passwd (no libc needed).
fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()? == uid).then(|| name.to_string())
    })
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 time now, for history records.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Sets the returned flag on Ctrl-C (SIGINT) or SIGTERM.
pub fn watch_interrupts() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::warn!(
            "interrupted: finishing what is in flight, rolling back what this run switched"
        );
        let _ = sender.send(true);
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn for_each_keeps_order_and_limits_concurrency() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let outcomes = for_each((0..20).collect(), 3, |item: u64| {
            let running = running.clone();
            let peak = peak.clone();
            async move {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20 - item)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                item * 2
            }
        })
        .await;
        assert_eq!(outcomes, (0..20).map(|item| item * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn run_ids_and_operators_are_safe_words() {
        let id = run_id();
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
        let operator = operator();
        assert!(operator.contains('@'));
        assert!(!operator.contains(' '));
    }
}
