//! Authentication: the ssh-agent's certificates and keys first, then the identity files (read
//! and decrypted once per run, the passphrase from `DEPLOY_KEY_PASSPHRASE` or a terminal
//! prompt), each offered with its OpenSSH user certificates (`<identity>-cert.pub`, explicit
//! certificate files) before the plain key; certificates are checked locally (type, validity
//! period) so an unusable one is named in the error. Each RSA key signs with the best SHA-2
//! hash the server offers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::{SystemTime, UNIX_EPOCH};

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::endpoint::{Agent, Endpoint};
use super::error::SshError;
use super::host_key::{Verifier, time_text};

/// Authenticates as `endpoint.user`: the ssh-agent's certificates, then its plain keys; then
/// for each identity file (loaded through `keys`, once per run) its certificates
/// (`<identity>-cert.pub`, then any of the endpoint's `certificate_files` for that key) and the plain key.
/// A certificate that is expired, not yet valid or not a user certificate is not offered; the
/// error names it with the reason.
pub(super) async fn authenticate(
    keys: &KeyCache,
    handle: &mut Handle<Verifier>,
    endpoint: &Endpoint,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    let user = endpoint.user.as_str();
    let now = now();

    if let Agent::Socket(socket) = &endpoint.agent {
        match russh::keys::agent::client::AgentClient::connect_uds(socket).await {
            Ok(mut agent) => match agent.request_identities().await {
                Ok(identities) => {
                    let (certificates, plain): (Vec<_>, Vec<_>) =
                        identities.into_iter().partition(|identity| {
                            matches!(identity, AgentIdentity::Certificate { .. })
                        });
                    let allowed = endpoint.identities_only.then(|| own_public_keys(endpoint));
                    for identity in certificates.into_iter().chain(plain) {
                        // IdentitiesOnly: only the agent keys that are one of the identity files.
                        if let Some(allowed) = &allowed {
                            let key_data = match &identity {
                                AgentIdentity::Certificate { certificate, .. } => {
                                    certificate.public_key()
                                }
                                AgentIdentity::PublicKey { key, .. } => key.key_data(),
                            };
                            if !allowed.iter().any(|own| own.key_data() == key_data) {
                                continue;
                            }
                        }
                        let hash = rsa_hash(handle, identity.public_key().algorithm()).await?;
                        let attempt = match identity {
                            AgentIdentity::Certificate { certificate, .. } => {
                                let label = format!(
                                    "agent certificate `{}` ({})",
                                    certificate.key_id(),
                                    certificate.public_key().fingerprint(HashAlg::Sha256)
                                );
                                if let Some(problem) = certificate_problem(&certificate, now) {
                                    tried.push(format!("{label} {problem} (not offered)"));
                                    continue;
                                }
                                tried.push(label);
                                handle
                                    .authenticate_certificate_with(
                                        user,
                                        certificate,
                                        hash,
                                        &mut agent,
                                    )
                                    .await
                            }
                            AgentIdentity::PublicKey { key, .. } => {
                                tried.push(format!(
                                    "agent key {}",
                                    key.fingerprint(HashAlg::Sha256)
                                ));
                                handle
                                    .authenticate_publickey_with(user, key, hash, &mut agent)
                                    .await
                            }
                        };
                        match attempt {
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
                for (certificate_path, certificate) in
                    certificates_for(path, &key, &endpoint.certificate_files, now, &mut tried)
                {
                    tried.push(format!("certificate {}", certificate_path.display()));
                    let result = handle
                        .authenticate_openssh_cert(user, key.clone(), certificate)
                        .await?;
                    if result.success() {
                        return Ok(());
                    }
                }
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// `<identity>-cert.pub`, the name OpenSSH looks for beside an identity file.
fn sidecar_certificate(identity: &Path) -> PathBuf {
    let mut name = identity.as_os_str().to_os_string();
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// The certificates to offer for `key` (loaded from `identity`), in order: the one beside
/// it, then each of `explicit` that certifies this key. Unreadable or unusable ones are noted
/// in `tried` (a missing sidecar is normal and not noted; a missing explicit one is).
fn certificates_for(
    identity: &Path,
    key: &PrivateKey,
    explicit: &[PathBuf],
    now: u64,
    tried: &mut Vec<String>,
) -> Vec<(PathBuf, Certificate)> {
    let sidecar = sidecar_certificate(identity);
    let mut offered = Vec::new();
    let candidates =
        std::iter::once((sidecar, false)).chain(explicit.iter().map(|path| (path.clone(), true)));
    for (path, named) in candidates {
        if offered.iter().any(|(earlier, _)| earlier == &path) {
            continue;
        }
        if !path.exists() {
            if named {
                tried.push(format!("certificate {} (missing)", path.display()));
            }
            continue;
        }
        let certificate = match Certificate::read_file(&path) {
            Ok(certificate) => certificate,
            Err(error) => {
                tried.push(format!(
                    "certificate {} (unreadable: {error})",
                    path.display()
                ));
                continue;
            }
        };
        if certificate.public_key() != key.public_key().key_data() {
            // An explicit certificate file for another identity is simply not this key's.
            if !named {
                tried.push(format!(
                    "certificate {} (certifies another key than {})",
                    path.display(),
                    identity.display()
                ));
            }
            continue;
        }
        if let Some(problem) = certificate_problem(&certificate, now) {
            tried.push(format!(
                "certificate {} {problem} (not offered)",
                path.display()
            ));
            continue;
        }
        offered.push((path, certificate));
    }
    offered
}

/// Why a user certificate cannot be used at `now` (seconds since the epoch), if it cannot:
/// checked locally so the error says so instead of a bare "permission denied".
fn certificate_problem(certificate: &Certificate, now: u64) -> Option<String> {
    if certificate.cert_type() != CertType::User {
        return Some("is a host certificate, not a user certificate".to_string());
    }
    if now < certificate.valid_after() {
        return Some(format!(
            "is not valid before {}",
            time_text(certificate.valid_after())
        ));
    }
    if now >= certificate.valid_before() {
        return Some(format!(
            "expired at {}",
            time_text(certificate.valid_before())
        ));
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use tempfile::TempDir;

    fn keygen(arguments: &[&str], path: &Path) {
        let status = Command::new("ssh-keygen")
            .args(arguments)
            .arg(path)
            .status()
            .expect("ssh-keygen runs (install openssh-client)");
        assert!(
            status.success(),
            "ssh-keygen {arguments:?} {}",
            path.display()
        );
    }

    fn key(directory: &TempDir, name: &str) -> PathBuf {
        let path = directory.path().join(name);
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f"], &path);
        path
    }

    /// Signs `<key>.pub` with `authority` into `<key>-cert.pub`.
    fn sign(authority: &Path, key: &Path, host: bool, validity: &str) -> PathBuf {
        let authority = authority.display().to_string();
        let mut arguments = vec!["-q", "-s", &authority, "-I", "test", "-n", "deploy"];
        arguments.extend(["-V", validity]);
        if host {
            arguments.push("-h");
        }
        let mut public = key.as_os_str().to_os_string();
        public.push(".pub");
        keygen(&arguments, Path::new(&public));
        sidecar_certificate(key)
    }

    fn private(path: &Path) -> PrivateKey {
        russh::keys::load_secret_key(path, None).unwrap()
    }

    #[test]
    fn certificates_are_offered_only_when_usable_and_named_otherwise() {
        let directory = TempDir::new().unwrap();
        let authority = key(&directory, "ca");
        let identity = key(&directory, "id");
        let other = key(&directory, "other");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();

        // No certificate beside the key: nothing offered, nothing said.
        let mut tried = Vec::new();
        assert!(certificates_for(&identity, &private(&identity), &[], now, &mut tried).is_empty());
        assert!(tried.is_empty(), "{tried:?}");

        let sidecar = sign(&authority, &identity, false, "always:forever");
        assert_eq!(sidecar, directory.path().join("id-cert.pub"));
        let offered = certificates_for(&identity, &private(&identity), &[], now, &mut tried);
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].0, sidecar);

        // Expired, not yet valid, host type: not offered, each named with its reason.
        for (validity, host, reason) in [
            ("20200101:20200102", false, "expired at 2020-01-0"),
            ("20990101:20990102", false, "is not valid before 2099-01-0"),
            ("always:forever", true, "is a host certificate"),
        ] {
            sign(&authority, &identity, host, validity);
            let mut tried = Vec::new();
            let offered = certificates_for(&identity, &private(&identity), &[], now, &mut tried);
            assert!(offered.is_empty(), "{validity}");
            assert_eq!(tried.len(), 1);
            assert!(
                tried[0].starts_with(&format!("certificate {}", sidecar.display()))
                    && tried[0].contains(reason)
                    && tried[0].ends_with("(not offered)"),
                "{tried:?}"
            );
        }

        // An explicit certificate file of another key is skipped for this one, silently;
        // a missing explicit file is named.
        let other_certificate = sign(&authority, &other, false, "always:forever");
        let missing = directory.path().join("missing-cert.pub");
        let mut tried = Vec::new();
        let offered = certificates_for(
            &other,
            &private(&other),
            &[other_certificate.clone(), missing.clone()],
            now,
            &mut tried,
        );
        assert_eq!(
            offered.len(),
            1,
            "the sidecar and the same explicit file count once"
        );
        assert_eq!(
            tried,
            [format!("certificate {} (missing)", missing.display())]
        );
        let mut tried = Vec::new();
        sign(&authority, &identity, false, "always:forever");
        let offered = certificates_for(
            &identity,
            &private(&identity),
            &[other_certificate],
            now,
            &mut tried,
        );
        assert_eq!(offered.len(), 1);
        assert!(tried.is_empty(), "{tried:?}");
    }
}
