//! SSH transport. The only module that names russh types.
//!
//! Owns: connecting to one host under a deadline (TCP connect, handshake and authentication),
//! the host-key decision (known_hosts files plus an optional pin, delegated to `known_hosts`),
//! authentication (ssh-agent first, then identity files, passphrases from the environment or a
//! terminal prompt), and running remote commands: plain, with stdin streamed from a reader with
//! backpressure, and "held" (a command kept running until we close its stdin, used for locks).
//! Callers get plain Rust types back (`Output`, `SshError`), never russh ones.
//!
//! Files, one idea each: `connection` (the [`Connector`], sessions, running commands and their
//! [`Output`]), `endpoint` (the [`Endpoint`] that identifies one host), `error` ([`SshError`]),
//! `auth` (ssh-agent, identity files, passphrases, the RSA signature hash), `host_key` (the
//! trust decision for a presented key, under a [`Trust`]) and `known_hosts` (the OpenSSH files
//! themselves; free of russh).

mod auth;
mod connection;
mod endpoint;
mod error;
mod host_key;
mod known_hosts;

pub use connection::{Connector, Held, Output, Session};
pub use endpoint::Endpoint;
pub use error::SshError;
pub use host_key::Trust;
