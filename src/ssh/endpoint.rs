//! The [`Endpoint`]: everything that identifies and authenticates one host (name, address,
//! port, user, identity files, host-key pin).

use std::path::PathBuf;

/// Everything that identifies and authenticates one host.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub host_key_pin: Option<String>,
}
