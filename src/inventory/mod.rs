//! The inventory: reading, parsing and validating the inventory file (SPEC §2), and turning a
//! `--hosts` selection (SPEC §1) into host indexes.
//!
//! This module owns everything that can be checked before any connection is made. Every problem in
//! the file is reported as an [`InventoryError`] that names the file, the 1-based line and the dotted
//! key (`hosts[2].port`, `services.myapp.version`, `ssh.connect_timeout`; array indexes count
//! from 0, in file order).
//!
//! Conventions decided here (where SPEC §2 is silent):
//! - Paths on the controller (`identity_files`, `known_hosts`, a path `artifact`) accept a leading
//!   `~/`, expanded with `$HOME`. A relative `artifact` path is relative to the inventory file's
//!   directory, not to the current directory.
//! - `base_dir` is a path on the remote host. It may be absolute, or relative, in which case it is
//!   relative to the remote login (home) directory; a leading `~/` means the same as a relative path.
//!   It is normalized (`//`, `/./` and trailing `/` removed) and may be neither `/` nor the login
//!   directory itself.
//! - `shared_paths` are relative to the release directory, normalized the same way; duplicates and
//!   one path nested inside another are errors.
//! - A tag may not equal a host name, so that every `--hosts` selector means exactly one thing.
//! - `host_key` is normalized to `"<algorithm> <base64>"` (a trailing comment is dropped).
//! - An inventory with no `[services.*]` table is valid (`deploy check` still works with it).
//! - The `[notify].webhook` URL is a secret: no error message echoes it and `Notify`'s `Debug`
//!   output redacts it. Artifact URLs are never echoed in error messages either.
//!
//! Files, one idea each: `model` (the validated types: [`Inventory`], hosts, services,
//! [`Version`]), `selection` (hosts by name or tag), `raw` (the file-shaped serde types),
//! `validation` (raw values to the model, with the defaults), `reach` (`[ssh]` config,
//! proxy_jump, proxy_command, addresses, and which connection keys the file wrote, for the
//! precedence over the ssh_config), `values` (rules for single values:
//! names, host keys, URLs, paths), `location` ([`InventoryError`]: file, line and dotted key of
//! a problem; the `Parser` that holds the text), `artifact_files` (local artifact files exist
//! before a run).

use std::path::Path;

use toml::de::DeTable;

mod artifact_files;
mod extends;
mod files;
mod location;
mod model;
mod ranges;
mod raw;
mod reach;
mod rollout;
mod selection;
mod selector;
mod validation;
mod values;
mod variables;

pub use files::UploadFile;
pub use location::InventoryError;
pub use model::{
    ArtifactSource, Delta, Fetch, Host, HostKeyPolicy, Inventory, OnFailure, Service, Version,
};
pub use rollout::BatchSize;
pub use variables::merged_env;

use location::{Parser, io_error_text};
use raw::RawInventory;

/// Reads and validates the inventory file at `path`.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|error| InventoryError {
        file: path.to_path_buf(),
        line: 0,
        key: String::new(),
        message: format!("cannot read inventory: {}", io_error_text(&error)),
    })?;
    parse_str(&text, path)
}

/// Parses and validates inventory `text`; `file` is used in errors and to resolve relative paths.
pub fn parse_str(text: &str, file: &Path) -> Result<Inventory, InventoryError> {
    let parser = Parser {
        text,
        file,
        ancestors: &[],
    };
    let document = DeTable::parse(text).map_err(|error| parser.syntax_error(&error))?;
    if document.get_ref().contains_key(extends::EXTENDS) {
        return extends::parse_extending(text, file, document);
    }
    let raw: RawInventory =
        toml::from_str(text).map_err(|error| parser.schema_error(&error, document.get_ref()))?;
    parser.build(raw)
}
