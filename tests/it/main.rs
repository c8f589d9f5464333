//! The one integration-test binary: drives the real `deploy` binary against real OpenSSH
//! `sshd` processes started by `support::Fleet` on 127.0.0.1. The test kit (scenarios, runs,
//! artifacts, filters for snapshots, the HTTP server) is `support`; snapshots of whole outputs
//! live in `snapshots/`.

mod support;

mod artifact_policy;
mod auth;
mod chaos;
mod check;
mod diff;
mod escapes;
mod faults;
mod hooks;
mod host_keys;
mod inventory_errors;
mod output;
mod push;
mod push_failures;
mod rollback;
mod status;
mod web;

pub use support::{Ran, run};
// The names this file used to define, kept for test files written against them.
#[allow(unused_imports)]
pub use support::{
    big_tarball, deploy_json, redact as normalize, tarball, tree_snapshot as snapshot,
};

/// Runs `deploy ARGS` and captures everything.
pub fn deploy(args: &[&str]) -> Ran {
    run(support::deploy().args(args))
}
