//! Authentication: the ssh-agent's keys first, then the identity files (read and decrypted once
//! per run, the passphrase from `DEPLOY_KEY_PASSPHRASE` or a terminal prompt), each RSA key
//! signing with the best SHA-2 hash the server offers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::endpoint::{Agent, Endpoint};
use super::error::SshError;
use super::host_key::Verifier;

/// Authenticates as `endpoint.user`: the ssh-agent's keys first, then the endpoint's identity
/// files (loaded through `keys`, once per run).
pub(super) async fn authenticate(
    keys: &KeyCache,
    handle: &mut Handle<Verifier>,
    endpoint: &Endpoint,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    let user = endpoint.user.as_str();

    if let Agent::Socket(socket) = &endpoint.agent {
        match russh::keys::agent::client::AgentClient::connect_uds(socket).await {
            Ok(mut agent) => match agent.request_identities().await {
                Ok(identities) => {
                    let allowed = endpoint.identities_only.then(|| own_public_keys(endpoint));
                    for identity in identities {
                        let public = identity.public_key().into_owned();
                        // IdentitiesOnly: only the agent keys that are one of the identity files.
                        if let Some(allowed) = &allowed
                            && !allowed
                                .iter()
                                .any(|own| own.key_data() == public.key_data())
                        {
                            continue;
                        }
                        let hash = rsa_hash(handle, public.algorithm()).await?;
                        tried.push(format!("agent key {}", public.fingerprint(HashAlg::Sha256)));
                        match handle
                            .authenticate_publickey_with(user, public, hash, &mut agent)
                            .await
                        {
                            Ok(result) if result.success() => return Ok(()),
                            Ok(_) => {}
                            Err(error) => {
                                tracing::debug!(host = %endpoint.name, "agent signing failed: {error}")
                            }
                        }
                    }
                }
                Err(error) => tried.push(format!("ssh-agent (unusable: {error})")),
            },
            Err(error) => tried.push(format!("ssh-agent (cannot connect: {error})")),
        }
    }

    for path in &endpoint.identity_files {
        let label = path.display().to_string();
        match keys.load(path).await {
            LoadedKey::Missing => tried.push(format!("{label} (missing)")),
            LoadedKey::Unusable(reason) => tried.push(format!("{label} ({reason})")),
            LoadedKey::Key(key) => {
                let hash = rsa_hash(handle, key.algorithm()).await?;
                tried.push(label);
                let result = handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
                    .await?;
                if result.success() {
                    return Ok(());
                }
            }
        }
    }
    Err(SshError::Auth {
        user: user.to_string(),
        tried,
    })
}

/// The public halves (`<identity>.pub`) of the endpoint's identity files that exist.
fn own_public_keys(endpoint: &Endpoint) -> Vec<russh::keys::PublicKey> {
    endpoint
        .identity_files
        .iter()
        .filter_map(|path| {
            let mut public = path.clone().into_os_string();
            public.push(".pub");
            russh::keys::load_public_key(PathBuf::from(public)).ok()
        })
        .collect()
}

async fn rsa_hash(
    handle: &Handle<Verifier>,
    algorithm: Algorithm,
) -> Result<Option<HashAlg>, SshError> {
    if !algorithm.is_rsa() {
        return Ok(None);
    }
    // None (no server-sig-algs) is answered with SHA-512: SHA-1 signatures are refused by
    // every current OpenSSH, and we never fall back to them.
    Ok(match handle.best_supported_rsa_hash().await? {
        Some(hash) => hash.or(Some(HashAlg::Sha512)),
        None => Some(HashAlg::Sha512),
    })
}

enum LoadedKey {
    Key(Arc<PrivateKey>),
    Missing,
    Unusable(String),
}

impl Clone for LoadedKey {
    fn clone(&self) -> Self {
        match self {
            LoadedKey::Key(key) => LoadedKey::Key(key.clone()),
            LoadedKey::Missing => LoadedKey::Missing,
            LoadedKey::Unusable(reason) => LoadedKey::Unusable(reason.clone()),
        }
    }
}

/// Identity files are read (and decrypted, prompting at most once per file) once per run.
#[derive(Default)]
pub(super) struct KeyCache {
    loaded: tokio::sync::Mutex<HashMap<PathBuf, LoadedKey>>,
}

impl KeyCache {
    /// Loads `path` now (asking its passphrase if needed), for later connections.
    pub(super) async fn preload(&self, path: &Path) {
        self.load(path).await;
    }

    async fn load(&self, path: &Path) -> LoadedKey {
        // Holding the lock while loading serializes passphrase prompts.
        let mut loaded = self.loaded.lock().await;
        if let Some(key) = loaded.get(path) {
            return key.clone();
        }
        let key = load_identity(path.to_path_buf()).await;
        loaded.insert(path.to_path_buf(), key.clone());
        key
    }
}

async fn load_identity(path: PathBuf) -> LoadedKey {
    if !path.exists() {
        return LoadedKey::Missing;
    }
    let result =
        tokio::task::spawn_blocking(move || match russh::keys::load_secret_key(&path, None) {
            Ok(key) => LoadedKey::Key(Arc::new(key)),
            Err(russh::keys::Error::KeyIsEncrypted) => {
                let passphrase = match std::env::var("DEPLOY_KEY_PASSPHRASE") {
                    Ok(passphrase) => Some(passphrase),
                    Err(_) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                        rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                            .ok()
                    }
                    Err(_) => None,
                };
                match passphrase {
                    None => LoadedKey::Unusable(
                        "encrypted; set DEPLOY_KEY_PASSPHRASE or run on a terminal".to_string(),
                    ),
                    Some(passphrase) => {
                        match russh::keys::load_secret_key(&path, Some(&passphrase)) {
                            Ok(key) => LoadedKey::Key(Arc::new(key)),
                            Err(_) => LoadedKey::Unusable("wrong passphrase".to_string()),
                        }
                    }
                }
            }
            Err(error) => LoadedKey::Unusable(format!("unreadable key: {error}")),
        })
        .await;
    result.unwrap_or_else(|_| LoadedKey::Unusable("key loading task failed".to_string()))
}
