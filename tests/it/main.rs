//! The one integration-test binary: drives the real `deploy` binary against real OpenSSH
//! `sshd` processes started by `support::Fleet` on 127.0.0.1. The test kit (scenarios, runs,
//! artifacts, filters for snapshots, the HTTP server) is `support`; snapshots of whole outputs
//! live in `snapshots/`.

mod support;

mod artifact_policy;
mod auth;
mod certificates;
mod chaos;
mod check;
mod delta;
mod diff;
mod escapes;
mod exec;
mod faults;
mod files;
mod first_deploy;
mod freeze;
mod guard_rails;
mod hooks;
mod host_keys;
mod inventory_errors;
mod inventory_scale;
mod operator_view;
mod output;
mod push;
mod push_failures;
mod reach;
mod rollback;
mod rollouts;
mod static_binary;
mod status;
mod web;
