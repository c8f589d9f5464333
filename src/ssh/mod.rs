//! SSH transport. The only module that names russh types.
//!
//! Owns: resolving each host's connection settings (inventory, then the OpenSSH client config,
//! then defaults), reaching it (TCP to each resolved address, jump hosts sharing one
//! connection per chain, ProxyCommand), connecting under a deadline per hop (TCP connect,
//! handshake and authentication, a dropped handshake retried with jittered backoff),
//! the host-key decision (known_hosts files plus an optional pin, delegated to `known_hosts`),
//! authentication (ssh-agent first, then identity files, passphrases from the environment or a
//! terminal prompt), and running remote commands: plain, with stdin streamed from a reader with
//! backpressure, and "held" (a command kept running until we close its stdin, used for locks).
//! Callers get plain Rust types back (`Output`, `SshError`), never russh ones.
//!
//! Files, one idea each: `connection` (the [`Connector`], sessions, running commands and their
//! [`Output`]), `endpoint` (the [`Endpoint`] that identifies one host and its [`Route`]),
//! `config` (the ssh_config file: `Host`, `Match`, `Include`, first value wins), `resolve`
//! (inventory + ssh_config + defaults into endpoints, with each value's origin), `proxy` (jump
//! lists, the ProxyCommand child), `error` ([`SshError`]),
//! `auth` (ssh-agent, identity files, passphrases, the RSA signature hash), `host_key` (the
//! trust decision for a presented key, under a [`Trust`]) and `known_hosts` (the OpenSSH files
//! themselves; free of russh).

mod auth;
mod config;
mod connection;
mod endpoint;
mod error;
mod host_key;
mod known_hosts;
mod proxy;
mod resolve;

pub use connection::{Connector, Held, Output, Session};
pub use endpoint::{Endpoint, Route};
pub use error::SshError;
pub use proxy::parse_jumps;
pub use resolve::{log_origins, resolve_endpoints};
