//! The raw inventory: serde types shaped like the file, every value kept with its span so that
//! `validation` can name the line of a bad value. Unknown keys are refused here.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInventory {
    pub(super) ssh: Option<RawSsh>,
    pub(super) deploy: Option<RawDeploy>,
    pub(super) hosts: Option<Spanned<Vec<Spanned<RawHost>>>>,
    pub(super) services: Option<BTreeMap<Spanned<String>, RawService>>,
    pub(super) notify: Option<RawNotify>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsh {
    pub(super) user: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) identity_files: Option<Vec<Spanned<String>>>,
    pub(super) known_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) host_key_policy: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) config: Option<Spanned<toml::Value>>,
    pub(super) proxy_jump: Option<Spanned<String>>,
    pub(super) proxy_command: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeploy {
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) host_timeout: Option<Spanned<String>>,
    pub(super) on_failure: Option<Spanned<String>>,
    pub(super) max_failures: Option<Spanned<toml::Value>>,
    pub(super) batch_size: Option<Spanned<toml::Value>>,
    pub(super) batch_pause: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) identity_files: Option<Vec<Spanned<String>>>,
    pub(super) tags: Option<Vec<Spanned<String>>>,
    pub(super) host_key: Option<Spanned<String>>,
    pub(super) proxy_jump: Option<Spanned<String>>,
    pub(super) env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) base_dir: Spanned<String>,
    pub(super) version: Option<Spanned<String>>,
    pub(super) artifact: Option<Spanned<String>>,
    pub(super) sha256: Option<Spanned<String>>,
    pub(super) fetch: Option<Spanned<String>>,
    pub(super) keep_releases: Option<Spanned<i64>>,
    pub(super) shared_paths: Option<Vec<Spanned<String>>>,
    pub(super) shared_files: Option<Vec<Spanned<String>>>,
    pub(super) env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub(super) files: Option<BTreeMap<Spanned<String>, Spanned<RawFile>>>,
    pub(super) tasks: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub(super) allow_setid: Option<bool>,
    pub(super) strip_components: Option<Spanned<i64>>,
    pub(super) delta: Option<Spanned<String>>,
    pub(super) hooks: Option<RawHooks>,
    pub(super) health_check: Option<RawHealthCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    #[serde(default)]
    pub(super) before_switch: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) after_switch: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub(super) command: Spanned<String>,
    pub(super) retries: Option<Spanned<i64>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) webhook: Spanned<String>,
}

/// One `[services.NAME.files]` entry: `{ source, mode }` or `{ env, mode }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) source: Option<Spanned<String>>,
    pub(super) env: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
}
