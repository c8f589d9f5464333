//! OpenSSH `known_hosts` handling for `deploy`.
//!
//! This module owns reading, matching and appending OpenSSH `known_hosts` entries, and the
//! trust decisions for a host key or a host certificate presented by a server. It is
//! deliberately independent of russh: the SSH layer passes the server key in as its OpenSSH
//! algorithm name and base64 blob (and a certificate as [`PresentedCertificate`]), and acts on
//! the returned [`Verdict`] or [`CertificateVerdict`].
//!
//! Each file is read and parsed **once per run** ([`KnownHosts`]) and shared by every host:
//! lines naming plain host names are indexed by name, the others (wildcards, negation, hashed
//! names) are matched one by one; a file over 1 MiB is not kept in memory, the lines a lookup
//! finds are read back from it ([`ParsedFile`]). A key recorded by `accept-new` goes into the
//! file and into the parsed copy under the same lock, so later hosts of the run see it and
//! never record it twice.
//!
//! We parse the files ourselves because russh's helper ignores `@revoked` and
//! `@cert-authority` markers, wildcards, negation, tab separators and upper-case names.
//! Supported, following sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT":
//!
//! - fields separated by any run of spaces and tabs; blank lines and `#` comments skipped;
//! - optional `@revoked` / `@cert-authority` marker (any other `@…` marker makes the line invalid);
//! - comma-separated host patterns with `*` / `?` wildcards and `!` negation, matched
//!   case-insensitively (ASCII, like OpenSSH) against [`lookup_name`];
//! - hashed host names `|1|base64(salt)|base64(HMAC-SHA1(salt, lookup name))`.
//!
//! Safety rules:
//!
//! - A line that cannot be parsed (unknown marker, missing fields, key that is not valid base64,
//!   key blob whose embedded type disagrees with the key type field, malformed hashed name) is
//!   skipped, so it can never lead to [`Verdict::Trusted`].
//! - `@cert-authority` lines never trust a plain key; they trust only a valid host certificate
//!   they signed ([`decide_certificate`]).
//! - A presented key (or a certificate's CA key or certified key) found on a matching
//!   `@revoked` line in any file is revoked, whatever the other lines say. Revocation compares
//!   the decoded key blob only.
//! - Keys are compared as decoded blobs (by their SHA-256), and the RSA algorithm names
//!   (`ssh-rsa`, `rsa-sha2-256`, `rsa-sha2-512`) are treated as one key type.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::text::wildcard_match;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A host key as presented by the server during key exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    /// OpenSSH algorithm name, e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`,
    /// `rsa-sha2-512`.
    pub algorithm: &'a str,
    /// The public key blob, base64-encoded exactly as in a `known_hosts` line.
    pub base64: &'a str,
}

/// What the trust decision needs from an OpenSSH host certificate (its signature is checked
/// by the caller, against the CA this decision names).
#[derive(Debug, Clone, Copy)]
pub struct PresentedCertificate<'a> {
    /// The certified host key.
    pub key: PresentedKey<'a>,
    /// The key of the CA that signed the certificate.
    pub authority: PresentedKey<'a>,
    /// Whether the certificate is of the host type (not a user certificate).
    pub host_type: bool,
    pub principals: &'a [String],
    /// Seconds since the epoch: valid from `valid_after` (inclusive) to `valid_before` (exclusive).
    pub valid_after: u64,
    pub valid_before: u64,
}

/// The trust decision for a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A matching line carries the same algorithm and key.
    Trusted { file: PathBuf, line: usize },
    /// No line matches this host at all.
    Unknown,
    /// A matching line carries the same algorithm but a different key (possible MITM).
    Changed { file: PathBuf, line: usize },
    /// The host is known only with keys of other algorithms.
    OtherType {
        file: PathBuf,
        line: usize,
        algorithm: String,
    },
    /// The presented key appears on a matching `@revoked` line.
    Revoked { file: PathBuf, line: usize },
}

/// Which key of a certificate a `@revoked` line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedKey {
    Authority,
    HostKey,
}

/// The trust decision for a presented host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateVerdict {
    /// A matching `@cert-authority` line carries the signing CA and the certificate is valid
    /// for this name now (its signature still has to be checked against that CA).
    Trusted {
        file: PathBuf,
        line: usize,
    },
    /// No matching `@cert-authority` line carries the CA; the certified key judged as a plain
    /// key (as OpenSSH does). `Verdict::Unknown` here means: unknown CA, nothing to fall back on.
    Plain(Verdict),
    /// The CA key or the certified key is on a matching `@revoked` line.
    Revoked {
        which: RevokedKey,
        file: PathBuf,
        line: usize,
    },
    /// A user certificate presented as a host key.
    NotHostCertificate,
    /// The certificate does not name the host among its principals (or names none).
    WrongPrincipal {
        principals: Vec<String>,
    },
    NotYetValid {
        valid_after: u64,
    },
    Expired {
        valid_before: u64,
    },
}

/// Errors from reading or writing `known_hosts` files.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error("cannot read known_hosts file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write known_hosts file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Every known_hosts file of a run, each read and parsed once (on first use) and shared by all
/// hosts. Appends go to the file and to the parsed copy under the file's lock.
#[derive(Default)]
pub struct KnownHosts {
    files: Mutex<HashMap<PathBuf, Arc<RwLock<ParsedFile>>>>,
    /// Held by the host that reads files not read yet ([`KnownHosts::read`]): the hosts that
    /// ask meanwhile wait for it here, not each on a thread blocked on `files`.
    reading: tokio::sync::Mutex<()>,
}

impl KnownHosts {
    /// Reads whichever of `files` are not read yet, on a blocking thread, before a lookup.
    /// Hosts that ask while they are read wait without holding a thread each (a run starts
    /// `concurrency` handshakes at once; each would otherwise start a blocking thread to wait
    /// on the first one's read). A file that cannot be read is left for
    /// [`KnownHosts::matching`] to report.
    pub async fn read(self: &Arc<Self>, files: &[PathBuf]) {
        let all_read = || {
            let read = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            files.iter().all(|path| read.contains_key(path))
        };
        if all_read() {
            return;
        }
        let _reading = self.reading.lock().await;
        if all_read() {
            return;
        }
        let (known, files) = (self.clone(), files.to_vec());
        let read = tokio::task::spawn_blocking(move || {
            for path in &files {
                // An error is reported by the lookup that follows (it tries again).
                let _ = known.file(path);
            }
        });
        // A panic there is reported by the lookup too (it reads the file itself).
        let _ = read.await;
    }

    /// The lines of `files` (in order; missing files count as empty) whose host field matches
    /// `host:port`.
    pub fn matching(
        &self,
        files: &[PathBuf],
        host: &str,
        port: u16,
    ) -> Result<Vec<Matched>, KnownHostsError> {
        let name = lookup_name(host, port);
        let mut matched = Vec::new();
        for path in files {
            let file = self.file(path)?;
            let parsed = file.read().unwrap_or_else(PoisonError::into_inner);
            let entries = parsed
                .matching(&name)
                .map_err(|source| KnownHostsError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
            matched.extend(entries.iter().map(|entry| entry.matched(path)));
        }
        Ok(matched)
    }

    /// Records `key` for `host:port` in `file` (see [`append`]) unless that file already
    /// holds exactly this entry (another host of the run recorded it first). The check and the
    /// write happen under the file's lock, so concurrent hosts never record a line twice.
    pub fn record(
        &self,
        file: &Path,
        host: &str,
        port: u16,
        key: &PresentedKey,
    ) -> Result<(), KnownHostsError> {
        let shared = self.file(file)?;
        let mut parsed = shared.write().unwrap_or_else(PoisonError::into_inner);
        let line = new_entry_line(host, port, key).map_err(|source| KnownHostsError::Write {
            path: file.to_path_buf(),
            source,
        })?;
        let Some(entry) = parse_line(&line) else {
            return Err(KnownHostsError::Write {
                path: file.to_path_buf(),
                source: invalid_input(format!("refusing to record unparseable line {line:?}")),
            });
        };
        let name = lookup_name(host, port);
        let earlier = parsed
            .matching(&name)
            .map_err(|source| KnownHostsError::Read {
                path: file.to_path_buf(),
                source,
            })?;
        let recorded = earlier.iter().any(|earlier| {
            earlier.parsed.marker == Marker::None
                && earlier.parsed.key == entry.key
                && earlier.parsed.consistent
        });
        if recorded {
            return Ok(());
        }
        append(file, host, port, key)?;
        parsed.push_appended(&line);
        Ok(())
    }

    /// The parsed file, read on first use.
    fn file(&self, path: &Path) -> Result<Arc<RwLock<ParsedFile>>, KnownHostsError> {
        // Held while reading: a file is read once even when many hosts ask at the same time.
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = files.get(path) {
            return Ok(file.clone());
        }
        let parsed =
            ParsedFile::read(path, KEPT_IN_MEMORY).map_err(|source| KnownHostsError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let file = Arc::new(RwLock::new(parsed));
        files.insert(path.to_path_buf(), file.clone());
        Ok(file)
    }
}

/// A line that matched a host: where it is and what it says.
#[derive(Debug, Clone)]
pub struct Matched {
    file: PathBuf,
    line: usize,
    marker: Marker,
    algorithm: String,
    /// SHA-256 of the decoded key blob.
    key: [u8; 32],
    consistent: bool,
}

/// The decision for a plain key, from the lines that matched the host.
pub fn decide_key(matched: &[Matched], key: &PresentedKey) -> Verdict {
    // A presented key that is not valid base64 can match nothing, so it can never be trusted.
    let presented = key_digest(key.base64);
    let presented_family = algorithm_family(key.algorithm);
    let carries_presented_key = |entry: &Matched| presented == Some(entry.key);

    // Revocation wins over everything, across all files.
    if let Some(entry) = matched
        .iter()
        .find(|entry| entry.marker == Marker::Revoked && carries_presented_key(entry))
    {
        return Verdict::Revoked {
            file: entry.file.clone(),
            line: entry.line,
        };
    }

    let plain: Vec<&Matched> = matched
        .iter()
        .filter(|entry| entry.marker == Marker::None && entry.consistent)
        .collect();
    let same_family = |entry: &&&Matched| algorithm_family(&entry.algorithm) == presented_family;

    if let Some(entry) = plain
        .iter()
        .filter(same_family)
        .find(|entry| carries_presented_key(entry))
    {
        return Verdict::Trusted {
            file: entry.file.clone(),
            line: entry.line,
        };
    }
    if let Some(entry) = plain.iter().find(same_family) {
        return Verdict::Changed {
            file: entry.file.clone(),
            line: entry.line,
        };
    }
    if let Some(entry) = plain.first() {
        return Verdict::OtherType {
            file: entry.file.clone(),
            line: entry.line,
            algorithm: entry.algorithm.clone(),
        };
    }
    Verdict::Unknown
}

/// The decision for a host certificate presented by `principal` (the host's name as looked
/// up, without the port) at `now` (seconds since the epoch), from the lines that matched the
/// host, in OpenSSH's order: revocation of the CA or the certified key; then a
/// `@cert-authority` line carrying the CA (without one, the certified key is judged as a plain
/// key); then the certificate's type, principals and validity period.
pub fn decide_certificate(
    matched: &[Matched],
    principal: &str,
    certificate: &PresentedCertificate,
    now: u64,
) -> CertificateVerdict {
    let revoked = |key: &PresentedKey| {
        let digest = key_digest(key.base64)?;
        matched
            .iter()
            .find(|entry| entry.marker == Marker::Revoked && entry.key == digest)
    };
    for (which, key) in [
        (RevokedKey::Authority, &certificate.authority),
        (RevokedKey::HostKey, &certificate.key),
    ] {
        if let Some(entry) = revoked(key) {
            return CertificateVerdict::Revoked {
                which,
                file: entry.file.clone(),
                line: entry.line,
            };
        }
    }
    let authority = key_digest(certificate.authority.base64);
    let Some(entry) = matched.iter().find(|entry| {
        entry.marker == Marker::CertAuthority && entry.consistent && Some(entry.key) == authority
    }) else {
        return CertificateVerdict::Plain(decide_key(matched, &certificate.key));
    };
    if !certificate.host_type {
        return CertificateVerdict::NotHostCertificate;
    }
    let principal = principal.to_ascii_lowercase();
    let named = certificate
        .principals
        .iter()
        .any(|listed| wildcard_match(listed.to_ascii_lowercase().as_bytes(), principal.as_bytes()));
    if !named {
        return CertificateVerdict::WrongPrincipal {
            principals: certificate.principals.to_vec(),
        };
    }
    if now < certificate.valid_after {
        return CertificateVerdict::NotYetValid {
            valid_after: certificate.valid_after,
        };
    }
    if now >= certificate.valid_before {
        return CertificateVerdict::Expired {
            valid_before: certificate.valid_before,
        };
    }
    CertificateVerdict::Trusted {
        file: entry.file.clone(),
        line: entry.line,
    }
}

/// Whether a `@cert-authority` line applies to the host (then certificate host-key algorithms
/// are worth asking for).
pub fn has_authority(matched: &[Matched]) -> bool {
    matched
        .iter()
        .any(|entry| entry.marker == Marker::CertAuthority && entry.consistent)
}

/// Distinct key algorithms recorded on plain lines, in file order. Names are returned as
/// written in the files (e.g. `ssh-rsa`).
pub fn recorded_algorithms(matched: &[Matched]) -> Vec<String> {
    let mut algorithms: Vec<String> = Vec::new();
    for entry in matched {
        if entry.marker == Marker::None
            && entry.consistent
            && !algorithms.contains(&entry.algorithm)
        {
            algorithms.push(entry.algorithm.clone());
        }
    }
    algorithms
}

/// Appends a plain (unhashed) entry for `host:port` to `file`, creating missing parent
/// directories (mode 0700) and the file (mode 0600). RSA keys are recorded as `ssh-rsa`, the
/// key type OpenSSH writes, whatever signature algorithm was negotiated.
///
/// The line is written with one `write` on a file opened in append mode, so concurrent appends
/// (from another process too) do not interleave.
pub fn append(
    file: &Path,
    host: &str,
    port: u16,
    key: &PresentedKey,
) -> Result<(), KnownHostsError> {
    let write_error = |source: io::Error| KnownHostsError::Write {
        path: file.to_path_buf(),
        source,
    };
    let line = new_entry_line(host, port, key).map_err(write_error)?;
    if let Some(parent) = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        create_private_directories(parent).map_err(write_error)?;
    }
    let mut handle = open_for_append(file).map_err(write_error)?;
    let mut text = String::new();
    if !ends_with_newline_or_empty(&mut handle).map_err(write_error)? {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    handle.write_all(text.as_bytes()).map_err(write_error)?;
    handle.sync_all().map_err(write_error)
}

/// `SHA256:` followed by unpadded standard base64 of the SHA-256 of the decoded key blob, as
/// printed by `ssh-keygen -l`. Returns `SHA256:(invalid key)` if the blob is not valid base64.
pub fn fingerprint(base64_blob: &str) -> String {
    match STANDARD.decode(base64_blob) {
        Ok(blob) => format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob))),
        Err(_) => "SHA256:(invalid key)".to_string(),
    }
}

/// The name OpenSSH looks up for `host:port`: the lowercased host for port 22, otherwise
/// `[host]:port`.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

const RSA_KEY_TYPE: &str = "ssh-rsa";
const HASH_PREFIX: &str = "|1|";
const SHA1_LENGTH: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
enum HostField {
    /// Comma-separated patterns, already lowercased.
    Patterns(String),
    Hashed {
        /// HMAC-SHA1 already keyed with the line's salt: a lookup costs the hash of the name
        /// only (every hashed line is tried for every host).
        keyed: Hmac<Sha1>,
        hash: [u8; SHA1_LENGTH],
    },
}

#[derive(Debug)]
struct ParsedLine {
    marker: Marker,
    hosts: HostField,
    algorithm: String,
    /// SHA-256 of the decoded key blob.
    key: [u8; 32],
    /// Whether the type name embedded in the blob agrees with the key type field.
    consistent: bool,
}

/// One parsed line and its line number.
#[derive(Debug)]
struct Entry {
    line: usize,
    parsed: ParsedLine,
}

impl Entry {
    fn matched(&self, file: &Path) -> Matched {
        Matched {
            file: file.to_path_buf(),
            line: self.line,
            marker: self.parsed.marker,
            algorithm: self.parsed.algorithm.clone(),
            key: self.parsed.key,
            consistent: self.parsed.consistent,
        }
    }
}

/// One file: an index of its lines, built by one pass over the file, and where to find a
/// line's text when a lookup finds it. The pass only finds each line's host field: lines of
/// plain host names are indexed by (a hash of) each name, the others (wildcards, negation,
/// hashed names) keep their parsed host field to be matched one by one. A line is parsed in
/// full (key decoded and digested) only when a lookup finds it, so a file of 50,000 other
/// hosts costs a scan of its bytes, not 50,000 key decodings.
///
/// A file of up to [`KEPT_IN_MEMORY`] bytes is kept in memory whole. A larger regular file is
/// read in chunks and not kept: its matching lines are read back by position from the file as
/// opened at first use (so the pass costs no memory for the text of thousands of other hosts,
/// and a file replaced during the run, as `ssh-keygen -R` does, still reads as it was).
#[derive(Debug, Default)]
struct ParsedFile {
    /// The file as opened at first use, when it is not kept in memory: the text at positions
    /// below `file_length` is read back from it.
    file: Option<File>,
    /// Bytes of the file that are read back from `file` (0 when the file is kept in memory).
    file_length: u64,
    /// The text at positions from `file_length` on: the whole file when it is kept in memory,
    /// then the lines appended in this run (each after a newline).
    tail: Vec<u8>,
    index: LineIndex,
    /// Number of newline characters in the file, and whether it ends with one (or is empty).
    newlines: usize,
    ends_with_newline: bool,
}

/// Files up to this size are kept in memory; a larger one is indexed by one pass over it and
/// its matching lines are read back from the open file.
const KEPT_IN_MEMORY: u64 = 1024 * 1024;
/// Bytes read at a time when indexing a file that is not kept in memory.
const READ_CHUNK: usize = 32 * 1024;

/// Where a line is (its position in the file, then in [`ParsedFile::tail`]), its length
/// without the newline, and its line number. A line longer than 4 GiB or past line
/// 4,294,967,295 is not indexed (it never matches).
#[derive(Debug, Clone, Copy)]
struct LineSpan {
    start: u64,
    length: u32,
    number: u32,
}

impl LineSpan {
    fn new(start: u64, length: usize, number: usize) -> Option<LineSpan> {
        Some(LineSpan {
            start,
            length: u32::try_from(length).ok()?,
            number: u32::try_from(number).ok()?,
        })
    }

    fn number(self) -> usize {
        self.number as usize
    }
}

/// A plain host name of a line: the index's hash of the name, and the line.
#[derive(Debug, Clone, Copy)]
struct NamedLine {
    hash: u64,
    line: LineSpan,
}

#[derive(Debug, Default)]
struct LineIndex {
    /// Each plain host name of each line, sorted by hash (built by pushing and sorting once: no
    /// table to probe per line). Names that share a hash are all candidates: a candidate line
    /// is always checked against the name.
    by_name: Vec<NamedLine>,
    /// Lines with wildcards, negation or hashed names, with their host field.
    scanned: Vec<(LineSpan, HostField)>,
    /// The `scanned` lines (indexes into `scanned`) that matched a lookup name: a hashed line
    /// costs an HMAC per name, paid once per name and run (a host may connect twice).
    scanned_found: Mutex<HashMap<String, Vec<usize>>>,
    /// Number of lines indexed (by name or scanned).
    lines: usize,
}

/// The index's hash of a host name, lowercased (ASCII) as OpenSSH compares names: eight bytes
/// at a time, as cheap as it gets for one name per line of a large file; a collision only adds
/// a candidate line, which is then checked.
fn name_hash(name: &[u8]) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |hash: u64, word: u64| {
        let hash = (hash ^ lowercase_word(word)).wrapping_mul(MULTIPLIER);
        hash ^ (hash >> 29)
    };
    let mut hash = name.len() as u64;
    let mut words = name.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        hash = mix(hash, u64::from_le_bytes(word));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut word = [0; 8];
        word[..rest.len()].copy_from_slice(rest);
        hash = mix(hash, u64::from_le_bytes(word));
    }
    hash
}

/// Each of the eight bytes of `word` lowercased as [`u8::to_ascii_lowercase`] does (only
/// `A`-`Z` change).
fn lowercase_word(word: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Per byte, without carries between bytes (the low seven bits plus at most 0x3f): the high
    // bit says "at least `A`", resp. "above `Z`".
    let low = word & !HIGH;
    let at_least_a = low + ONES * u64::from(0x80 - b'A');
    let above_z = low + ONES * u64::from(0x7f - b'Z');
    let upper = at_least_a & !above_z & !word & HIGH;
    word | (upper >> 2)
}

/// The first field of `bytes` (runs of bytes between spaces and tabs) and what follows it.
fn next_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = bytes
        .iter()
        .position(|&byte| byte != b' ' && byte != b'\t')?;
    let bytes = &bytes[start..];
    let end = memchr::memchr2(b' ', b'\t', bytes).unwrap_or(bytes.len());
    Some(bytes.split_at(end))
}

impl LineIndex {
    /// Indexes the line `raw` (without its newline) by its host field; blank lines, comments
    /// and lines whose marker or hashed name is malformed are left out (they never match).
    /// Only the host field is looked at: the rest is parsed if a lookup finds the line.
    fn add(&mut self, raw: &[u8], span: LineSpan) {
        let Some((first, rest)) = next_field(raw) else {
            return;
        };
        let hosts = match first {
            [b'#', ..] => return,
            b"@revoked" | b"@cert-authority" => match next_field(rest) {
                Some((hosts, _)) => hosts,
                None => return,
            },
            [b'@', ..] => return,
            _ => first,
        };
        if hosts.starts_with(b"|") || memchr::memchr3(b'*', b'?', b'!', hosts).is_some() {
            // As `parse_line` sees it: invalid UTF-8 replaced.
            let Some(field) = parse_host_field(&String::from_utf8_lossy(hosts)) else {
                return;
            };
            self.lines += 1;
            self.scanned.push((span, field));
            // A new line may match names looked up before.
            self.scanned_found
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            return;
        }
        self.lines += 1;
        // As `parse_line` sees it: invalid UTF-8 replaced (and `\r` is never inside a host
        // field: at least two fields follow it on a line that can match). Unsorted until
        // `sorted` is called (once the whole file is in).
        let mut push = |name: &[u8]| {
            self.by_name.push(NamedLine {
                hash: name_hash(name),
                line: span,
            })
        };
        if hosts.is_ascii() {
            let mut start = 0;
            for comma in memchr::memchr_iter(b',', hosts) {
                push(&hosts[start..comma]);
                start = comma + 1;
            }
            push(&hosts[start..]);
        } else {
            for name in String::from_utf8_lossy(hosts).split(',') {
                push(name.as_bytes());
            }
        }
    }

    /// Sorts `by_name` after lines were added.
    fn sorted(&mut self) {
        // By hash only: `candidates` puts a name's lines back in file order.
        self.by_name.sort_unstable_by_key(|named| named.hash);
    }

    /// Puts the entries of `by_name` from `first` on (those of one line just added to a sorted
    /// index) in their places: no sort of the whole index for each line recorded.
    fn insert_sorted(&mut self, first: usize) {
        for named in self.by_name.split_off(first) {
            let place = self
                .by_name
                .partition_point(|other| other.hash <= named.hash);
            self.by_name.insert(place, named);
        }
    }

    /// The candidate lines for the lookup name `name`, in file order.
    fn candidates(&self, name: &str) -> Vec<LineSpan> {
        let hash = name_hash(name.as_bytes());
        let first = self.by_name.partition_point(|named| named.hash < hash);
        let mut found: Vec<LineSpan> = self.by_name[first..]
            .iter()
            .take_while(|named| named.hash == hash)
            .map(|named| named.line)
            .collect();
        if !self.scanned.is_empty() {
            let mut cache = self
                .scanned_found
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let scanned = cache.entry(name.to_string()).or_insert_with(|| {
                (0..self.scanned.len())
                    .filter(|&index| host_field_matches(&self.scanned[index].1, name))
                    .collect()
            });
            found.extend(scanned.iter().map(|&index| self.scanned[index].0));
        }
        found.sort_unstable_by_key(|line| line.number);
        found.dedup_by_key(|line| line.number);
        found
    }
}

impl ParsedFile {
    /// The file at `path` (missing: empty), kept in memory if it has at most `kept_in_memory`
    /// bytes or is not a regular file.
    fn read(path: &Path, kept_in_memory: u64) -> io::Result<ParsedFile> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(ParsedFile::default());
            }
            Err(error) => return Err(error),
        };
        let metadata = file.metadata()?;
        let mut parsed = ParsedFile::default();
        if metadata.is_file() && metadata.len() > kept_in_memory {
            parsed.file_length = parsed.index_lines(&file, false, READ_CHUNK)?;
            parsed.file = Some(file);
        } else {
            parsed.index_lines(&file, true, READ_CHUNK)?;
        }
        Ok(parsed)
    }

    /// The file whose contents are `contents`, kept in memory.
    #[cfg(test)]
    fn parse(contents: &[u8]) -> ParsedFile {
        let mut parsed = ParsedFile::default();
        match parsed.index_lines(contents, true, READ_CHUNK) {
            Ok(_) => parsed,
            Err(error) => unreachable!("reading a slice cannot fail: {error}"),
        }
    }

    /// Indexes every line of `reader` in one pass, `chunk_size` bytes at a time (appending the
    /// bytes to `tail` if `keep`); returns the number of bytes read.
    fn index_lines(
        &mut self,
        mut reader: impl Read,
        keep: bool,
        chunk_size: usize,
    ) -> io::Result<u64> {
        let mut chunk = vec![0; chunk_size.max(1)];
        // The start of a line that continues in the next chunk.
        let mut pending: Vec<u8> = Vec::new();
        let mut position: u64 = 0;
        let mut line_start: u64 = 0;
        let mut last_byte = None;
        loop {
            let count = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            let bytes = &chunk[..count];
            if keep {
                self.tail.extend_from_slice(bytes);
            }
            last_byte = bytes.last().copied();
            let mut from = 0;
            for end in memchr::memchr_iter(b'\n', bytes) {
                let line = if pending.is_empty() {
                    &bytes[from..end]
                } else {
                    pending.extend_from_slice(&bytes[from..end]);
                    &pending[..]
                };
                self.newlines += 1;
                if let Some(span) = LineSpan::new(line_start, line.len(), self.newlines) {
                    self.index.add(line, span);
                }
                pending.clear();
                from = end + 1;
                line_start = position + from as u64;
            }
            pending.extend_from_slice(&bytes[from..]);
            position += count as u64;
        }
        // The last line (empty if the file ends with a newline).
        if let Some(span) = LineSpan::new(line_start, pending.len(), self.newlines + 1) {
            self.index.add(&pending, span);
        }
        self.ends_with_newline = matches!(last_byte, None | Some(b'\n'));
        self.index.sorted();
        Ok(position)
    }

    /// Adds the line [`append`] just wrote at the end of the file.
    fn push_appended(&mut self, line: &str) {
        if !self.ends_with_newline {
            self.newlines += 1;
        }
        let number = self.newlines + 1;
        self.newlines += 1;
        self.ends_with_newline = true;
        self.tail.push(b'\n');
        let start = self.file_length + self.tail.len() as u64;
        self.tail.extend_from_slice(line.as_bytes());
        if let Some(span) = LineSpan::new(start, line.len(), number) {
            let first = self.index.by_name.len();
            self.index.add(line.as_bytes(), span);
            self.index.insert_sorted(first);
        }
    }

    /// The text of `line`: from memory, or read back from the file.
    fn text(&self, line: LineSpan) -> io::Result<std::borrow::Cow<'_, [u8]>> {
        let length = line.length as usize;
        if let Some(offset) = line.start.checked_sub(self.file_length) {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            return self
                .tail
                .get(start..start + length)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| io::Error::other("line outside the parsed text"));
        }
        let Some(file) = &self.file else {
            return Err(io::Error::other("line outside the parsed text"));
        };
        let mut text = vec![0; length];
        read_at(file, &mut text, line.start).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::other("the file was shortened while deploy was running")
            } else {
                error
            }
        })?;
        Ok(std::borrow::Cow::Owned(text))
    }

    /// The entries matching the lookup name `name`, in file order, each parsed now.
    fn matching(&self, name: &str) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for line in self.index.candidates(name) {
            let text = self.text(line)?;
            let Some(parsed) = parse_line(&String::from_utf8_lossy(&text)) else {
                continue;
            };
            if host_field_matches(&parsed.hosts, name) {
                entries.push(Entry {
                    line: line.number(),
                    parsed,
                });
            }
        }
        Ok(entries)
    }
}

/// Reads `buffer.len()` bytes of `file` at `offset`, without moving a shared cursor (many
/// hosts read lines of one file at the same time).
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buffer, offset)
}

fn key_digest(base64: &str) -> Option<[u8; 32]> {
    STANDARD
        .decode(base64)
        .ok()
        .map(|blob| Sha256::digest(&blob).into())
}
/// Parses one physical line; `None` for blank lines, comments and anything malformed.
fn parse_line(line: &str) -> Option<ParsedLine> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = line.split([' ', '\t']).filter(|field| !field.is_empty());
    let first = fields.next()?;
    if first.starts_with('#') {
        return None;
    }
    let (marker, hosts) = if first.starts_with('@') {
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            _ => return None,
        };
        (marker, fields.next()?)
    } else {
        (Marker::None, first)
    };
    let algorithm = fields.next()?;
    let blob = STANDARD.decode(fields.next()?).ok()?;
    if blob.is_empty() {
        return None;
    }
    let hosts = parse_host_field(hosts)?;
    let consistent = embedded_algorithm(&blob)
        .is_some_and(|embedded| algorithm_family(embedded) == algorithm_family(algorithm));
    Some(ParsedLine {
        marker,
        hosts,
        algorithm: algorithm.to_string(),
        key: Sha256::digest(&blob).into(),
        consistent,
    })
}

fn parse_host_field(field: &str) -> Option<HostField> {
    if !field.starts_with('|') {
        return Some(HostField::Patterns(field.to_ascii_lowercase()));
    }
    let (salt, hash) = field.strip_prefix(HASH_PREFIX)?.split_once('|')?;
    let salt = STANDARD.decode(salt).ok()?;
    let hash: [u8; SHA1_LENGTH] = STANDARD.decode(hash).ok()?.try_into().ok()?;
    if salt.len() != SHA1_LENGTH {
        return None;
    }
    let keyed = Hmac::<Sha1>::new_from_slice(&salt).ok()?;
    Some(HostField::Hashed { keyed, hash })
}

fn host_field_matches(field: &HostField, name: &str) -> bool {
    match field {
        HostField::Patterns(patterns) => pattern_list_matches(patterns, name),
        HostField::Hashed { keyed, hash } => {
            let mut mac = keyed.clone();
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
    }
}

/// OpenSSH `match_pattern_list`: at least one positive pattern matches and no negated one does.
fn pattern_list_matches(patterns: &str, name: &str) -> bool {
    let mut positive = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) => {
                if wildcard_match(negated.as_bytes(), name.as_bytes()) {
                    return false;
                }
            }
            None => positive |= wildcard_match(pattern.as_bytes(), name.as_bytes()),
        }
    }
    positive
}

/// The key type name at the start of an SSH public key blob (a `string`: u32 length + bytes).
fn embedded_algorithm(blob: &[u8]) -> Option<&str> {
    let length_bytes: [u8; 4] = blob.get(..4)?.try_into().ok()?;
    let length = usize::try_from(u32::from_be_bytes(length_bytes)).ok()?;
    let name = blob.get(4..4usize.checked_add(length)?)?;
    std::str::from_utf8(name).ok()
}

/// Maps the RSA signature algorithm names onto the `ssh-rsa` key type.
pub(super) fn algorithm_family(algorithm: &str) -> &str {
    match algorithm {
        "rsa-sha2-256" | "rsa-sha2-512" => RSA_KEY_TYPE,
        other => other,
    }
}

/// The line [`append`] records for `host:port` (without its newline), after
/// [`validate_new_entry`]: `lookup-name algorithm base64`, RSA keys as `ssh-rsa`.
fn new_entry_line(host: &str, port: u16, key: &PresentedKey) -> io::Result<String> {
    validate_new_entry(host, key)?;
    let algorithm = if algorithm_family(key.algorithm) == RSA_KEY_TYPE {
        RSA_KEY_TYPE
    } else {
        key.algorithm
    };
    Ok(format!(
        "{} {} {}",
        lookup_name(host, port),
        algorithm,
        key.base64
    ))
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Refuses anything that would write a malformed line or a line broader than the host
/// (patterns, lists, negation, hashed or marker syntax, whitespace or control characters).
fn validate_new_entry(host: &str, key: &PresentedKey) -> io::Result<()> {
    let forbidden_in_host = |character: char| {
        character.is_whitespace() || character.is_control() || ",*?!|#".contains(character)
    };
    if host.is_empty() || host.starts_with('@') || host.chars().any(forbidden_in_host) {
        return Err(invalid_input(format!(
            "refusing to record host name {host:?}"
        )));
    }
    let valid_algorithm = !key.algorithm.is_empty()
        && key
            .algorithm
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "@._-".contains(character));
    if !valid_algorithm {
        return Err(invalid_input(format!(
            "refusing to record key algorithm {:?}",
            key.algorithm
        )));
    }
    let blob = STANDARD.decode(key.base64).map_err(|error| {
        invalid_input(format!(
            "refusing to record key that is not valid base64: {error}"
        ))
    })?;
    let embedded = embedded_algorithm(&blob)
        .ok_or_else(|| invalid_input("refusing to record malformed key blob".to_string()))?;
    if algorithm_family(embedded) != algorithm_family(key.algorithm) {
        return Err(invalid_input(format!(
            "refusing to record {} key whose blob says {embedded:?}",
            key.algorithm
        )));
    }
    Ok(())
}

fn create_private_directories(directory: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(directory)
}

fn open_for_append(file: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(file)
}

fn ends_with_newline_or_empty(handle: &mut File) -> io::Result<bool> {
    if handle.metadata()?.len() == 0 {
        return Ok(true);
    }
    handle.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    handle.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// The verdict for `key` presented by `host:port`, reading `files` afresh (tests only).
#[cfg(test)]
fn check(
    files: &[PathBuf],
    host: &str,
    port: u16,
    key: &PresentedKey,
) -> Result<Verdict, KnownHostsError> {
    let matched = KnownHosts::default().matching(files, host, port)?;
    Ok(decide_key(&matched, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use tempfile::TempDir;

    /// A well-formed (but not cryptographically valid) key blob: string(type) + string(payload).
    fn fake_key(algorithm: &str, seed: u8) -> String {
        let mut blob = Vec::new();
        for part in [algorithm_family(algorithm).as_bytes(), &[seed; 32][..]] {
            blob.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
            blob.extend_from_slice(part);
        }
        STANDARD.encode(blob)
    }

    fn presented<'a>(algorithm: &'a str, base64: &'a str) -> PresentedKey<'a> {
        PresentedKey { algorithm, base64 }
    }

    fn write(directory: &TempDir, name: &str, contents: &str) -> PathBuf {
        let path = directory.path().join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    fn trusted(file: &Path, line: usize) -> Verdict {
        Verdict::Trusted {
            file: file.to_path_buf(),
            line,
        }
    }

    /// Generates a key pair with ssh-keygen (a missing ssh-keygen fails the test loudly).
    fn generate_key(directory: &TempDir, key_type: &str) -> Option<(PathBuf, String, String)> {
        let private = directory.path().join(format!("id_{key_type}"));
        let status = match Command::new("ssh-keygen")
            .args(["-q", "-t", key_type, "-N", "", "-C", "test", "-f"])
            .arg(&private)
            .status()
        {
            Ok(status) => status,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                panic!("ssh-keygen not found: install openssh-client (scripts/test.sh does)")
            }
            Err(error) => panic!("running ssh-keygen: {error}"),
        };
        assert!(status.success());
        let public = private.with_extension("pub");
        let text = fs::read_to_string(&public).unwrap();
        let mut fields = text.split_whitespace();
        let algorithm = fields.next().unwrap().to_string();
        let base64 = fields.next().unwrap().to_string();
        Some((public, algorithm, base64))
    }

    fn recorded_algorithms(
        files: &[PathBuf],
        host: &str,
        port: u16,
    ) -> Result<Vec<String>, KnownHostsError> {
        let matched = KnownHosts::default().matching(files, host, port)?;
        Ok(super::recorded_algorithms(&matched))
    }

    #[test]
    fn plain_entry_is_trusted() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 1);
        let file = write(
            &directory,
            "known_hosts",
            &format!("web1.example.com ssh-ed25519 {key} comment here\n"),
        );
        let files = [file.clone()];
        let verdict = check(
            &files,
            "web1.example.com",
            22,
            &presented("ssh-ed25519", &key),
        );
        assert_eq!(verdict.unwrap(), trusted(&file, 1));
        let other = check(
            &files,
            "web2.example.com",
            22,
            &presented("ssh-ed25519", &key),
        );
        assert_eq!(other.unwrap(), Verdict::Unknown);
    }

    #[test]
    fn comma_list_matches_every_name() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 2);
        let file = write(
            &directory,
            "known_hosts",
            &format!("web1,10.0.0.5,[web1]:2222 ssh-ed25519 {key}\n"),
        );
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(check(&files, "web1", 22, &key).unwrap(), trusted(&file, 1));
        assert_eq!(
            check(&files, "10.0.0.5", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "web1", 2222, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "10.0.0.6", 22, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entry_written_by_ssh_keygen() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 3);
        let file = write(
            &directory,
            "known_hosts",
            &format!("db.example.com ssh-ed25519 {key}\n[db.example.com]:2200 ssh-ed25519 {key}\n"),
        );
        let status = match Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&file)
            .output()
        {
            Ok(output) => output.status,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                panic!("ssh-keygen not found: install openssh-client (scripts/test.sh does)")
            }
            Err(error) => panic!("running ssh-keygen: {error}"),
        };
        assert!(status.success());
        let hashed = fs::read_to_string(&file).unwrap();
        assert!(
            hashed.lines().all(|line| line.starts_with(HASH_PREFIX)),
            "{hashed}"
        );
        assert!(!hashed.contains("db.example.com"));
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&files, "db.example.com", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "DB.example.com", 2200, &key).unwrap(),
            trusted(&file, 2)
        );
        assert_eq!(
            check(&files, "db.example.org", 22, &key).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, "db.example.com", 2201, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entry_computed_by_hand() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 4);
        let salt = [0x5au8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[cache.example.com]:2222");
        let hash = mac.finalize().into_bytes();
        let line = format!(
            "|1|{}|{} ssh-ed25519 {key}\n",
            STANDARD.encode(salt),
            STANDARD.encode(hash)
        );
        let file = write(&directory, "known_hosts", &line);
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&files, "cache.example.com", 2222, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "cache.example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entry_fixed_vector_from_openssh() {
        // Produced once by OpenSSH 9.2 `ssh-keygen -H` for build-07.example.com (port 22 and 2222).
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIHAwlHmFgkxwFs5oLgZVQd02ia3trmEgBnByMxlvViRL";
        let directory = TempDir::new().unwrap();
        let file = write(
            &directory,
            "known_hosts",
            &format!(
                "|1|K6E64bX2jtKxi+8iJLVo9rDRDdE=|dTabeCglDnF+H9tDlA7BqfMroNs= ssh-ed25519 {key}\n\
                 |1|9sM1q/vrXA09sIG07hA2dNiNEdQ=|//KlpVqBEeDa9clceAbXpdFhbYo= ssh-ed25519 {key}\n"
            ),
        );
        let files = [file.clone()];
        let key = presented("ssh-ed25519", key);
        assert_eq!(
            check(&files, "build-07.example.com", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "build-07.example.com", 2222, &key).unwrap(),
            trusted(&file, 2)
        );
        assert_eq!(
            check(&files, "build-08.example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn malformed_hashed_entries_are_skipped() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 5);
        let file = write(
            &directory,
            "known_hosts",
            &format!(
                "|1|not*base64|dTabeCglDnF+H9tDlA7BqfMroNs= ssh-ed25519 {key}\n\
                 |1|K6E64bX2jtKxi+8iJLVo9rDRDdE= ssh-ed25519 {key}\n\
                 |2|K6E64bX2jtKxi+8iJLVo9rDRDdE=|dTabeCglDnF+H9tDlA7BqfMroNs= ssh-ed25519 {key}\n\
                 |1|AAAA|dTabeCglDnF+H9tDlA7BqfMroNs= ssh-ed25519 {key}\n"
            ),
        );
        let files = [file];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&files, "build-07.example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn bracketed_port_entry() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 6);
        let file = write(
            &directory,
            "known_hosts",
            &format!("[app.example.com]:2222 ssh-ed25519 {key}\n"),
        );
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&files, "app.example.com", 2222, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "app.example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, "app.example.com", 2223, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn port_22_uses_the_bare_name() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 7);
        let bare = write(
            &directory,
            "bare",
            &format!("app.example.com ssh-ed25519 {key}\n"),
        );
        let bracketed = write(
            &directory,
            "bracketed",
            &format!("[app.example.com]:22 ssh-ed25519 {key}\n"),
        );
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(std::slice::from_ref(&bare), "app.example.com", 22, &key).unwrap(),
            trusted(&bare, 1)
        );
        // OpenSSH never looks up "[host]:22".
        assert_eq!(
            check(&[bracketed], "app.example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn bare_name_does_not_match_another_port() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 8);
        let file = write(
            &directory,
            "known_hosts",
            &format!("app.example.com ssh-ed25519 {key}\n"),
        );
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&[file], "app.example.com", 2222, &key).unwrap(),
            Verdict::Unknown
        );
    }

    #[test]
    fn wildcard_patterns() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 9);
        let file = write(
            &directory,
            "known_hosts",
            &format!(
                "*.example.com ssh-ed25519 {key}\n[127.0.0.*]:2222 ssh-ed25519 {key}\nweb-?? ssh-ed25519 {key}\n"
            ),
        );
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&files, "a.b.example.com", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, "a.example.com", 2222, &key).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, "127.0.0.1", 2222, &key).unwrap(),
            trusted(&file, 2)
        );
        assert_eq!(
            check(&files, "127.0.0.1", 22, &key).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, "127.0.1.1", 2222, &key).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, "web-01", 22, &key).unwrap(),
            trusted(&file, 3)
        );
        assert_eq!(check(&files, "web-1", 22, &key).unwrap(), Verdict::Unknown);
    }

    #[test]
    fn glob_edge_cases() {
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"*", b"anything"));
        assert!(wildcard_match(b"a*b*c", b"axxbyyc"));
        assert!(wildcard_match(b"*.example.com", b"x.example.com"));
        assert!(!wildcard_match(b"*.example.com", b"x.example.com.evil"));
        assert!(wildcard_match(b"a**", b"a"));
        assert!(!wildcard_match(b"a?", b"a"));
        assert!(!wildcard_match(b"", b"a"));
        assert!(wildcard_match(b"", b""));
        assert!(wildcard_match(b"*ab", b"aab"));
    }

    #[test]
    fn negation_excludes_a_host() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 10);
        let file = write(
            &directory,
            "known_hosts",
            &format!("!bad.example.com,*.example.com ssh-ed25519 {key}\n"),
        );
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&files, "good.example.com", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "bad.example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            check(&files, "BAD.example.com", 22, &key).unwrap(),
            Verdict::Unknown
        );
        // A line with only negated patterns matches nothing.
        assert!(!pattern_list_matches(
            "!bad.example.com",
            "good.example.com"
        ));
    }

    #[test]
    fn matching_is_case_insensitive() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 11);
        let file = write(
            &directory,
            "known_hosts",
            &format!("WEB1.Example.COM ssh-ed25519 {key}\n[LOCALHOST]:2222 ssh-ed25519 {key}\n"),
        );
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(
            check(&files, "web1.example.com", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "Web1.Example.Com", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "localhost", 2222, &key).unwrap(),
            trusted(&file, 2)
        );
    }

    #[test]
    fn tabs_and_runs_of_blanks_separate_fields() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 12);
        let file = write(
            &directory,
            "known_hosts",
            &format!("\t web1\t\tssh-ed25519 \t{key}\tcomment\r\n"),
        );
        let files = [file.clone()];
        let key = presented("ssh-ed25519", &key);
        assert_eq!(check(&files, "web1", 22, &key).unwrap(), trusted(&file, 1));
    }

    #[test]
    fn revoked_beats_a_trusted_line() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 13);
        let file = write(
            &directory,
            "known_hosts",
            &format!("web1 ssh-ed25519 {key}\n@revoked web1 ssh-ed25519 {key}\n"),
        );
        let files = [file.clone()];
        let verdict = check(&files, "web1", 22, &presented("ssh-ed25519", &key)).unwrap();
        assert_eq!(verdict, Verdict::Revoked { file, line: 2 });
    }

    #[test]
    fn revoked_in_a_second_file_with_star() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 14);
        let other = fake_key("ssh-ed25519", 15);
        let user = write(
            &directory,
            "user",
            &format!("web1 ssh-ed25519 {key}\nweb2 ssh-ed25519 {other}\n"),
        );
        let global = write(
            &directory,
            "global",
            &format!("# revocations\n@revoked * ssh-ed25519 {key}\n"),
        );
        let files = [user.clone(), global.clone()];
        let verdict = check(&files, "web1", 22, &presented("ssh-ed25519", &key)).unwrap();
        assert_eq!(
            verdict,
            Verdict::Revoked {
                file: global,
                line: 2
            }
        );
        // Revocation concerns the key only: another host with another key is unaffected.
        let verdict = check(&files, "web2", 22, &presented("ssh-ed25519", &other)).unwrap();
        assert_eq!(verdict, trusted(&user, 2));
        // A revoked line whose patterns do not match the host does not apply.
        let scoped = write(
            &directory,
            "scoped",
            &format!("@revoked web9 ssh-ed25519 {key}\n"),
        );
        let verdict = check(
            &[user.clone(), scoped],
            "web1",
            22,
            &presented("ssh-ed25519", &key),
        );
        assert_eq!(verdict.unwrap(), trusted(&user, 1));
    }

    #[test]
    fn cert_authority_never_trusts() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 16);
        let file = write(
            &directory,
            "known_hosts",
            &format!(
                "@cert-authority *.example.com ssh-ed25519 {key}\n@cert-authority web1.example.com ssh-ed25519 {key}\n"
            ),
        );
        let files = [file];
        let verdict = check(
            &files,
            "web1.example.com",
            22,
            &presented("ssh-ed25519", &key),
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Unknown);
        assert!(
            recorded_algorithms(&files, "web1.example.com", 22)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn unknown_marker_is_skipped() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 17);
        let file = write(
            &directory,
            "known_hosts",
            &format!("@trusted web1 ssh-ed25519 {key}\n"),
        );
        let verdict = check(&[file], "web1", 22, &presented("ssh-ed25519", &key)).unwrap();
        assert_eq!(verdict, Verdict::Unknown);
    }

    #[test]
    fn changed_reports_file_and_line() {
        let directory = TempDir::new().unwrap();
        let recorded = fake_key("ssh-ed25519", 18);
        let presented_key = fake_key("ssh-ed25519", 19);
        let first = write(
            &directory,
            "first",
            &format!("other ssh-ed25519 {recorded}\n"),
        );
        let second = write(
            &directory,
            "second",
            &format!(
                "# header\n\n  # indented comment\nweb1 ecdsa-sha2-nistp256 {}\nweb1 ssh-ed25519 {recorded}\nweb1 ssh-ed25519 {recorded}\n",
                fake_key("ecdsa-sha2-nistp256", 1)
            ),
        );
        let files = [first, second.clone()];
        let verdict = check(
            &files,
            "web1",
            22,
            &presented("ssh-ed25519", &presented_key),
        )
        .unwrap();
        assert_eq!(
            verdict,
            Verdict::Changed {
                file: second,
                line: 5
            }
        );
    }

    #[test]
    fn trusted_beats_an_earlier_changed_line() {
        let directory = TempDir::new().unwrap();
        let old = fake_key("ssh-ed25519", 20);
        let new = fake_key("ssh-ed25519", 21);
        let file = write(
            &directory,
            "known_hosts",
            &format!("web1 ssh-ed25519 {old}\nweb1 ssh-ed25519 {new}\n"),
        );
        let verdict = check(
            std::slice::from_ref(&file),
            "web1",
            22,
            &presented("ssh-ed25519", &new),
        )
        .unwrap();
        assert_eq!(verdict, trusted(&file, 2));
    }

    #[test]
    fn other_type_when_only_other_algorithms_are_known() {
        let directory = TempDir::new().unwrap();
        let file = write(
            &directory,
            "known_hosts",
            &format!(
                "# comment\nweb1 ecdsa-sha2-nistp256 {}\nweb1 ssh-rsa {}\n",
                fake_key("ecdsa-sha2-nistp256", 22),
                fake_key("ssh-rsa", 23)
            ),
        );
        let key = fake_key("ssh-ed25519", 24);
        let verdict = check(
            std::slice::from_ref(&file),
            "web1",
            22,
            &presented("ssh-ed25519", &key),
        )
        .unwrap();
        assert_eq!(
            verdict,
            Verdict::OtherType {
                file,
                line: 2,
                algorithm: "ecdsa-sha2-nistp256".to_string()
            }
        );
    }

    #[test]
    fn malformed_lines_are_ignored() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 25);
        let corrupted = format!("{}!{}", &key[..10], &key[11..]);
        let rsa_blob = fake_key("ssh-rsa", 25);
        let file = write(
            &directory,
            "known_hosts",
            &format!(
                "web1\nweb1 ssh-ed25519\n@revoked\n@revoked web1 ssh-ed25519\n\
                 web1 ssh-ed25519 {corrupted}\n\
                 web1 ssh-ed25519 {key}garbage\n\
                 web1 ssh-ed25519 {rsa_blob}\n\
                 web1 ssh-ed25519 AAAA\n\
                 web2 ssh-ed25519 {key}\n"
            ),
        );
        let files = [file.clone()];
        // Nothing valid matches web1 (the type/blob mismatch line is skipped too).
        let verdict = check(&files, "web1", 22, &presented("ssh-ed25519", &key)).unwrap();
        assert_eq!(verdict, Verdict::Unknown);
        // The corrupted key string itself, presented as-is, is never trusted either.
        let verdict = check(&files, "web1", 22, &presented("ssh-ed25519", &corrupted)).unwrap();
        assert_eq!(verdict, Verdict::Unknown);
        // Parsing continues after malformed lines, with physical line numbers.
        let verdict = check(&files, "web2", 22, &presented("ssh-ed25519", &key)).unwrap();
        assert_eq!(verdict, trusted(&file, 9));
    }

    #[test]
    fn invalid_utf8_does_not_stop_parsing() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 26);
        let path = directory.path().join("known_hosts");
        let mut contents = b"web\xff1 ssh-ed25519 ".to_vec();
        contents.extend_from_slice(key.as_bytes());
        contents.extend_from_slice(format!("\nweb1 ssh-ed25519 {key} comment ").as_bytes());
        contents.extend_from_slice(b"\xe2\n");
        fs::write(&path, contents).unwrap();
        let verdict = check(
            std::slice::from_ref(&path),
            "web1",
            22,
            &presented("ssh-ed25519", &key),
        )
        .unwrap();
        assert_eq!(verdict, trusted(&path, 2));
    }

    #[test]
    fn missing_file_is_unknown() {
        let directory = TempDir::new().unwrap();
        let files = [
            directory.path().join("absent"),
            directory.path().join("no/such/dir/file"),
        ];
        let key = fake_key("ssh-ed25519", 27);
        let verdict = check(&files, "web1", 22, &presented("ssh-ed25519", &key)).unwrap();
        assert_eq!(verdict, Verdict::Unknown);
        assert!(recorded_algorithms(&files, "web1", 22).unwrap().is_empty());
    }

    #[test]
    fn directory_is_a_read_error() {
        let directory = TempDir::new().unwrap();
        let files = [directory.path().to_path_buf()];
        let key = fake_key("ssh-ed25519", 28);
        let error = check(&files, "web1", 22, &presented("ssh-ed25519", &key)).unwrap_err();
        assert!(matches!(&error, KnownHostsError::Read { path, .. } if path == directory.path()));
        assert!(
            error
                .to_string()
                .starts_with("cannot read known_hosts file ")
        );
        assert!(recorded_algorithms(&files, "web1", 22).is_err());
    }

    #[test]
    fn append_creates_directory_and_file_then_trusts() {
        let directory = TempDir::new().unwrap();
        let file = directory.path().join("new/.ssh/known_hosts");
        let key = fake_key("ssh-ed25519", 29);
        let key = presented("ssh-ed25519", &key);
        append(&file, "Web1.Example.com", 22, &key).unwrap();
        append(&file, "web1.example.com", 2222, &key).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            format!(
                "web1.example.com ssh-ed25519 {0}\n[web1.example.com]:2222 ssh-ed25519 {0}\n",
                key.base64
            )
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let files = [file.clone()];
        assert_eq!(
            check(&files, "web1.example.com", 22, &key).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "web1.example.com", 2222, &key).unwrap(),
            trusted(&file, 2)
        );
    }

    #[test]
    fn append_adds_missing_trailing_newline() {
        let directory = TempDir::new().unwrap();
        let old = fake_key("ssh-ed25519", 30);
        let new = fake_key("ssh-ed25519", 31);
        let file = write(
            &directory,
            "known_hosts",
            &format!("web1 ssh-ed25519 {old}"),
        );
        append(&file, "web2", 22, &presented("ssh-ed25519", &new)).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            format!("web1 ssh-ed25519 {old}\nweb2 ssh-ed25519 {new}\n")
        );
        let files = [file.clone()];
        assert_eq!(
            check(&files, "web1", 22, &presented("ssh-ed25519", &old)).unwrap(),
            trusted(&file, 1)
        );
        assert_eq!(
            check(&files, "web2", 22, &presented("ssh-ed25519", &new)).unwrap(),
            trusted(&file, 2)
        );
    }

    #[test]
    fn append_records_rsa_as_ssh_rsa() {
        let directory = TempDir::new().unwrap();
        let file = directory.path().join("known_hosts");
        let key = fake_key("ssh-rsa", 32);
        append(&file, "web1", 22, &presented("rsa-sha2-512", &key)).unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!("web1 ssh-rsa {key}\n")
        );
    }

    #[test]
    fn append_refuses_unsafe_input() {
        let directory = TempDir::new().unwrap();
        let file = directory.path().join("known_hosts");
        let key = fake_key("ssh-ed25519", 33);
        for host in [
            "", "*", "web?", "a,b", "!web", "web 1", "web\n1", "|1|x|y", "@revoked", "#web",
        ] {
            let result = append(&file, host, 22, &presented("ssh-ed25519", &key));
            assert!(
                matches!(result, Err(KnownHostsError::Write { .. })),
                "{host:?}"
            );
        }
        for (algorithm, base64) in [
            ("ssh-ed25519\n*", key.as_str()),
            ("", key.as_str()),
            ("ssh-ed25519", "not base64!"),
            ("ssh-ed25519", "AAAA"),
            ("ecdsa-sha2-nistp256", key.as_str()),
        ] {
            let result = append(&file, "web1", 22, &presented(algorithm, base64));
            assert!(
                matches!(result, Err(KnownHostsError::Write { .. })),
                "{algorithm:?} {base64:?}"
            );
        }
        assert!(!file.exists());
    }

    #[test]
    fn append_into_a_directory_is_a_write_error() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 34);
        let error = append(
            directory.path(),
            "web1",
            22,
            &presented("ssh-ed25519", &key),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot write known_hosts file ")
        );
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // Fixed vector (OpenSSH 9.2 `ssh-keygen -l`), independent of the tool being installed.
        assert_eq!(
            fingerprint("AAAAC3NzaC1lZDI1NTE5AAAAIHAwlHmFgkxwFs5oLgZVQd02ia3trmEgBnByMxlvViRL"),
            "SHA256:wYzJdZ0rA/GVV0mAGxzn4WUHhjeVv46yEBBWdpUeMhM"
        );
        assert_eq!(fingerprint("not base64!"), "SHA256:(invalid key)");
        let directory = TempDir::new().unwrap();
        for key_type in ["ed25519", "ecdsa"] {
            let Some((public, _, base64)) = generate_key(&directory, key_type) else {
                return;
            };
            let output = Command::new("ssh-keygen")
                .arg("-l")
                .arg("-f")
                .arg(&public)
                .output()
                .unwrap();
            assert!(output.status.success());
            let listing = String::from_utf8(output.stdout).unwrap();
            let expected = listing.split_whitespace().nth(1).unwrap();
            assert_eq!(fingerprint(&base64), expected);
        }
    }

    #[test]
    fn generated_key_round_trip() {
        let directory = TempDir::new().unwrap();
        let Some((_, algorithm, base64)) = generate_key(&directory, "ecdsa") else {
            return;
        };
        let file = directory.path().join("known_hosts");
        let key = presented(&algorithm, &base64);
        append(&file, "10.1.2.3", 2222, &key).unwrap();
        assert_eq!(
            check(std::slice::from_ref(&file), "10.1.2.3", 2222, &key).unwrap(),
            trusted(&file, 1)
        );
    }

    #[test]
    fn rsa_algorithm_names_are_one_key_type() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-rsa", 35);
        let other = fake_key("ssh-rsa", 36);
        let file = write(&directory, "known_hosts", &format!("web1 ssh-rsa {key}\n"));
        let files = [file.clone()];
        for algorithm in ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"] {
            assert_eq!(
                check(&files, "web1", 22, &presented(algorithm, &key)).unwrap(),
                trusted(&file, 1)
            );
            assert_eq!(
                check(&files, "web1", 22, &presented(algorithm, &other)).unwrap(),
                Verdict::Changed {
                    file: file.clone(),
                    line: 1
                }
            );
        }
    }

    #[test]
    fn recorded_algorithms_in_file_order() {
        let directory = TempDir::new().unwrap();
        let first = write(
            &directory,
            "first",
            &format!(
                "web1 ecdsa-sha2-nistp256 {}\n@revoked web1 ssh-ed25519 {}\nweb1 ssh-rsa {}\n",
                fake_key("ecdsa-sha2-nistp256", 37),
                fake_key("ssh-ed25519", 38),
                fake_key("ssh-rsa", 39)
            ),
        );
        let second = write(
            &directory,
            "second",
            &format!(
                "*.other ssh-ed25519 {}\nweb1 ssh-ed25519 {}\nweb1 ecdsa-sha2-nistp256 {}\nweb1 ssh-dss broken\n",
                fake_key("ssh-ed25519", 40),
                fake_key("ssh-ed25519", 41),
                fake_key("ecdsa-sha2-nistp256", 42)
            ),
        );
        let algorithms = recorded_algorithms(&[first, second], "WEB1", 22).unwrap();
        assert_eq!(
            algorithms,
            ["ecdsa-sha2-nistp256", "ssh-rsa", "ssh-ed25519"]
        );
    }

    #[test]
    fn lookup_names() {
        assert_eq!(lookup_name("Web1.Example.COM", 22), "web1.example.com");
        assert_eq!(lookup_name("Web1", 2222), "[web1]:2222");
        assert_eq!(lookup_name("::1", 2200), "[::1]:2200");
    }

    /// The lines of `text` (one file, `known_hosts`) that match `host:port`.
    fn matched_in(text: &str, host: &str, port: u16) -> Vec<Matched> {
        let file = ParsedFile::parse(text.as_bytes());
        file.matching(&lookup_name(host, port))
            .unwrap()
            .iter()
            .map(|entry| entry.matched(Path::new("known_hosts")))
            .collect()
    }

    /// A host certificate for `web1.example.com` signed by `authority`, valid from 100 to 200.
    fn certificate<'a>(
        key: &'a str,
        authority: &'a str,
        principals: &'a [String],
    ) -> PresentedCertificate<'a> {
        PresentedCertificate {
            key: presented("ssh-ed25519", key),
            authority: presented("ssh-ed25519", authority),
            host_type: true,
            principals,
            valid_after: 100,
            valid_before: 200,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_certificate_is_trusted_through_a_matching_cert_authority_line() {
        let (authority, key) = (fake_key("ssh-ed25519", 60), fake_key("ssh-ed25519", 61));
        let text = format!(
            "web1.example.com ssh-ed25519 {}\n@cert-authority *.example.com ssh-ed25519 {authority}\n",
            fake_key("ssh-ed25519", 62)
        );
        let principals = names(&["db.example.com", "WEB1.example.com"]);
        let matched = matched_in(&text, "web1.example.com", 22);
        assert!(has_authority(&matched));
        let certificate = certificate(&key, &authority, &principals);
        let trusted = CertificateVerdict::Trusted {
            file: PathBuf::from("known_hosts"),
            line: 2,
        };
        // Valid from valid_after (inclusive) to valid_before (exclusive).
        for now in [100, 150, 199] {
            assert_eq!(
                decide_certificate(&matched, "web1.example.com", &certificate, now),
                trusted
            );
        }
        assert_eq!(
            decide_certificate(&matched, "web1.example.com", &certificate, 99),
            CertificateVerdict::NotYetValid { valid_after: 100 }
        );
        assert_eq!(
            decide_certificate(&matched, "web1.example.com", &certificate, 200),
            CertificateVerdict::Expired { valid_before: 200 }
        );
        // A wildcard principal names the host too (as OpenSSH allows for host certificates).
        let wildcard = names(&["*.example.com"]);
        assert_eq!(
            decide_certificate(
                &matched,
                "web1.example.com",
                &self::certificate(&key, &authority, &wildcard),
                150
            ),
            trusted
        );
    }

    #[test]
    fn each_certificate_failure_has_its_own_verdict() {
        let (authority, other, key) = (
            fake_key("ssh-ed25519", 63),
            fake_key("ssh-ed25519", 64),
            fake_key("ssh-ed25519", 65),
        );
        let text = format!("@cert-authority [web1]:2222 ssh-ed25519 {authority}\n");
        let matched = matched_in(&text, "web1", 2222);
        let principals = names(&["web1"]);
        let good = certificate(&key, &authority, &principals);
        assert!(matches!(
            decide_certificate(&matched, "web1", &good, 150),
            CertificateVerdict::Trusted { line: 1, .. }
        ));
        // Another CA, with no plain line to fall back on.
        assert_eq!(
            decide_certificate(
                &matched,
                "web1",
                &certificate(&key, &other, &principals),
                150
            ),
            CertificateVerdict::Plain(Verdict::Unknown)
        );
        // The line is for port 2222 only.
        assert_eq!(
            decide_certificate(&matched_in(&text, "web1", 22), "web1", &good, 150),
            CertificateVerdict::Plain(Verdict::Unknown)
        );
        let user = PresentedCertificate {
            host_type: false,
            ..good
        };
        assert_eq!(
            decide_certificate(&matched, "web1", &user, 150),
            CertificateVerdict::NotHostCertificate
        );
        for listed in [names(&["web2", "web1.example.com"]), names(&[])] {
            assert_eq!(
                decide_certificate(
                    &matched,
                    "web1",
                    &certificate(&key, &authority, &listed),
                    150
                ),
                CertificateVerdict::WrongPrincipal {
                    principals: listed.clone()
                }
            );
        }
    }

    #[test]
    fn an_unknown_authority_falls_back_to_the_plain_lines_of_the_certified_key() {
        let (authority, key) = (fake_key("ssh-ed25519", 66), fake_key("ssh-ed25519", 67));
        let principals = names(&["web1"]);
        let certificate = certificate(&key, &authority, &principals);
        let known = matched_in(&format!("web1 ssh-ed25519 {key}\n"), "web1", 22);
        assert!(!has_authority(&known));
        assert_eq!(
            decide_certificate(&known, "web1", &certificate, 150),
            CertificateVerdict::Plain(Verdict::Trusted {
                file: PathBuf::from("known_hosts"),
                line: 1
            })
        );
        let changed = matched_in(
            &format!("web1 ssh-ed25519 {}\n", fake_key("ssh-ed25519", 68)),
            "web1",
            22,
        );
        assert!(matches!(
            decide_certificate(&changed, "web1", &certificate, 150),
            CertificateVerdict::Plain(Verdict::Changed { line: 1, .. })
        ));
    }

    #[test]
    fn revocation_of_the_authority_or_the_certified_key_wins() {
        let (authority, key) = (fake_key("ssh-ed25519", 69), fake_key("ssh-ed25519", 70));
        let principals = names(&["web1"]);
        let certificate = certificate(&key, &authority, &principals);
        for (revoked, which) in [
            (&authority, RevokedKey::Authority),
            (&key, RevokedKey::HostKey),
        ] {
            let text = format!(
                "@cert-authority * ssh-ed25519 {authority}\nweb1 ssh-ed25519 {key}\n@revoked * ssh-ed25519 {revoked}\n"
            );
            assert_eq!(
                decide_certificate(&matched_in(&text, "web1", 22), "web1", &certificate, 150),
                CertificateVerdict::Revoked {
                    which,
                    file: PathBuf::from("known_hosts"),
                    line: 3
                }
            );
        }
        // A @revoked line for another host does not apply.
        let text = format!(
            "@cert-authority * ssh-ed25519 {authority}\n@revoked web2 ssh-ed25519 {authority}\n"
        );
        assert!(matches!(
            decide_certificate(&matched_in(&text, "web1", 22), "web1", &certificate, 150),
            CertificateVerdict::Trusted { line: 1, .. }
        ));
    }

    #[test]
    fn recording_is_visible_at_once_and_never_twice() {
        let directory = TempDir::new().unwrap();
        let file = write(
            &directory,
            "known_hosts",
            "# first line, no newline at the end",
        );
        let files = [file.clone()];
        let key = fake_key("ssh-ed25519", 71);
        let key = presented("ssh-ed25519", &key);
        let known = KnownHosts::default();
        assert_eq!(
            decide_key(&known.matching(&files, "web1", 2222).unwrap(), &key),
            Verdict::Unknown
        );
        known.record(&file, "web1", 2222, &key).unwrap();
        known.record(&file, "WEB1", 2222, &key).unwrap();
        // Seen by this run without reading the file again, with its line number.
        assert_eq!(
            decide_key(&known.matching(&files, "web1", 2222).unwrap(), &key),
            trusted(&file, 2)
        );
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!(
                "# first line, no newline at the end\n[web1]:2222 ssh-ed25519 {}\n",
                key.base64
            )
        );
        // And by a later run, from the file.
        assert_eq!(
            check(&files, "web1", 2222, &key).unwrap(),
            trusted(&file, 2)
        );
    }

    #[test]
    fn a_file_is_read_once_per_run() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 72);
        let file = write(
            &directory,
            "known_hosts",
            &format!("web1 ssh-ed25519 {key}\n"),
        );
        let files = [file.clone()];
        let known = KnownHosts::default();
        assert_eq!(known.matching(&files, "web1", 22).unwrap().len(), 1);
        // Changed behind the run's back: the run keeps the copy it parsed.
        fs::write(&file, "").unwrap();
        assert_eq!(known.matching(&files, "web1", 22).unwrap().len(), 1);
        assert!(
            KnownHosts::default()
                .matching(&files, "web1", 22)
                .unwrap()
                .is_empty()
        );
    }

    /// A file larger than [`KEPT_IN_MEMORY`]: `others` lines of other hosts (so lines cross
    /// many read chunks), with `tail` after them.
    fn large_file(directory: &TempDir, others: usize, tail: &str) -> PathBuf {
        let other_key = fake_key("ssh-ed25519", 90);
        let mut text = String::new();
        for index in 0..others {
            text.push_str(&format!(
                "host-{index}.example.com ssh-ed25519 {other_key}\n"
            ));
        }
        text.push_str(tail);
        assert!(text.len() as u64 > KEPT_IN_MEMORY);
        write(directory, "known_hosts", &text)
    }

    #[test]
    fn a_large_file_is_indexed_without_keeping_its_text() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 91);
        let revoked = fake_key("ssh-ed25519", 92);
        let others = 20_000;
        let file = large_file(
            &directory,
            others,
            &format!("web1,10.0.0.1 ssh-ed25519 {key}\n@revoked * ssh-ed25519 {revoked}\n# end"),
        );
        let parsed = ParsedFile::read(&file, KEPT_IN_MEMORY).unwrap();
        assert!(parsed.file.is_some());
        assert!(parsed.tail.is_empty());
        assert_eq!(parsed.index.lines, others + 2);
        assert_eq!(parsed.newlines, others + 2);
        assert!(!parsed.ends_with_newline);
        // Every line of the file, chunk boundaries included, is found with its number.
        for index in [0, 1, 300, 9_999, others - 1] {
            let found = parsed
                .matching(&format!("host-{index}.example.com"))
                .unwrap();
            let numbers: Vec<usize> = found.iter().map(|entry| entry.line).collect();
            assert_eq!(numbers, [index + 1, others + 2], "host-{index}");
        }
        let files = [file.clone()];
        let known = KnownHosts::default();
        for host in ["web1", "10.0.0.1", "WEB1"] {
            assert_eq!(
                decide_key(
                    &known.matching(&files, host, 22).unwrap(),
                    &presented("ssh-ed25519", &key)
                ),
                trusted(&file, others + 1)
            );
        }
        assert_eq!(
            decide_key(
                &known.matching(&files, "web1", 22).unwrap(),
                &presented("ssh-ed25519", &revoked)
            ),
            Verdict::Revoked {
                file: file.clone(),
                line: others + 2
            }
        );
    }

    #[test]
    fn a_large_file_takes_appended_lines_in_order() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 93);
        let others = 15_000;
        // No newline at the end: the appended line comes after one.
        let file = large_file(&directory, others, "# last line");
        let files = [file.clone()];
        let known = KnownHosts::default();
        let hosts = ["web1", "web2", "web3", "host-7.example.com"];
        for host in hosts {
            known
                .record(&file, host, 2222, &presented("ssh-ed25519", &key))
                .unwrap();
        }
        for (index, host) in hosts.iter().enumerate() {
            assert_eq!(
                decide_key(
                    &known.matching(&files, host, 2222).unwrap(),
                    &presented("ssh-ed25519", &key)
                ),
                trusted(&file, others + 2 + index),
                "{host}"
            );
        }
        // The index is still sorted: the file's own lines are still found.
        assert_eq!(
            known
                .matching(&files, "host-7.example.com", 22)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            known
                .matching(&files, "host-14999.example.com", 22)
                .unwrap()
                .len(),
            1
        );
        // A later run reads the same from the file.
        assert_eq!(
            check(&files, "web3", 2222, &presented("ssh-ed25519", &key)).unwrap(),
            trusted(&file, others + 4)
        );
    }

    #[test]
    fn a_large_file_replaced_during_the_run_reads_as_it_was() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 94);
        let file = large_file(&directory, 20_000, &format!("web1 ssh-ed25519 {key}\n"));
        let files = [file.clone()];
        let known = KnownHosts::default();
        assert_eq!(known.matching(&files, "web2", 22).unwrap().len(), 0);
        // Replaced as `ssh-keygen -R` does (a new file renamed over it): the open file is read.
        let replacement = write(&directory, "replacement", "");
        fs::rename(&replacement, &file).unwrap();
        assert_eq!(
            decide_key(
                &known.matching(&files, "web1", 22).unwrap(),
                &presented("ssh-ed25519", &key)
            ),
            trusted(&file, 20_001)
        );
    }

    #[test]
    fn a_large_file_shortened_during_the_run_is_a_read_error() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 95);
        let file = large_file(&directory, 20_000, &format!("web1 ssh-ed25519 {key}\n"));
        let files = [file.clone()];
        let known = KnownHosts::default();
        assert_eq!(known.matching(&files, "web2", 22).unwrap().len(), 0);
        // Truncated in place: the line cannot be read back, and no verdict is made up.
        fs::write(&file, "").unwrap();
        let error = known.matching(&files, "web1", 22).unwrap_err();
        assert!(matches!(error, KnownHostsError::Read { .. }), "{error}");
        assert!(error.to_string().contains("shortened"), "{error}");
    }

    #[test]
    fn lowercase_word_lowercases_each_byte_as_ascii_does() {
        for byte in 0..=u8::MAX {
            for place in 0..8 {
                let mut bytes = *b"Ab-Z@[`z";
                bytes[place] = byte;
                let expected = bytes.map(|byte| byte.to_ascii_lowercase());
                assert_eq!(
                    lowercase_word(u64::from_le_bytes(bytes)).to_le_bytes(),
                    expected,
                    "{bytes:?}"
                );
            }
        }
    }

    #[test]
    fn next_field_skips_runs_of_blanks() {
        assert_eq!(next_field(b""), None);
        assert_eq!(next_field(b" \t "), None);
        assert_eq!(
            next_field(b" \tweb1,web2\t ssh-ed25519 key"),
            Some((&b"web1,web2"[..], &b"\t ssh-ed25519 key"[..]))
        );
        assert_eq!(next_field(b"web1"), Some((&b"web1"[..], &b""[..])));
    }

    #[test]
    fn small_and_special_files_are_kept_in_memory() {
        let directory = TempDir::new().unwrap();
        let key = fake_key("ssh-ed25519", 96);
        let file = write(
            &directory,
            "known_hosts",
            &format!("web1 ssh-ed25519 {key}\n"),
        );
        let parsed = ParsedFile::read(&file, KEPT_IN_MEMORY).unwrap();
        assert!(parsed.file.is_none());
        assert_eq!(parsed.tail, fs::read(&file).unwrap());
        // Not a regular file: read whole, whatever its size.
        let parsed = ParsedFile::read(Path::new("/dev/null"), 0).unwrap();
        assert!(parsed.file.is_none());
        assert_eq!(parsed.index.lines, 0);
        assert!(parsed.ends_with_newline);
    }
}

/// Property tests: arbitrary lines and host names never panic, and every line [`append`] writes
/// parses back and matches its host.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use tempfile::TempDir;

    fn fail(error: impl std::fmt::Display) -> TestCaseError {
        TestCaseError::fail(error.to_string())
    }

    /// Host names as they appear in inventories, plus arbitrary text.
    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[A-Za-z0-9][A-Za-z0-9.-]{0,30}",
            1 => "[0-9a-fA-F:]{2,20}",
            1 => "\\PC{1,20}",
            1 => ".{0,20}",
        ]
    }

    /// A presented key whose blob names its own type: `(algorithm, base64)`.
    fn key() -> impl Strategy<Value = (String, String)> {
        let algorithm = prop_oneof![
            prop::sample::select(vec![
                "ssh-ed25519",
                "ecdsa-sha2-nistp256",
                "ssh-rsa",
                "rsa-sha2-256",
                "rsa-sha2-512",
                "sk-ssh-ed25519@openssh.com",
            ])
            .prop_map(str::to_string),
            "[a-z0-9@._-]{1,20}",
        ];
        (algorithm, prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(algorithm, payload)| {
            let family = algorithm_family(&algorithm).as_bytes().to_vec();
            let mut blob = Vec::new();
            blob.extend_from_slice(&(family.len() as u32).to_be_bytes());
            blob.extend_from_slice(&family);
            blob.extend_from_slice(&payload);
            (algorithm, STANDARD.encode(blob))
        })
    }

    /// One `known_hosts`-shaped line, or noise.
    fn line() -> impl Strategy<Value = String> {
        let marker = prop::sample::select(vec!["", "@revoked ", "@cert-authority ", "@other "]);
        let hosts = prop_oneof![
            host(),
            "[a-z*?!,\\[\\]:0-9.|]{0,24}",
            "\\|1\\|[A-Za-z0-9+/=]{0,30}\\|[A-Za-z0-9+/=]{0,30}",
        ];
        let separator = prop::sample::select(vec![" ", "\t", "  \t "]);
        prop_oneof![
            3 => (marker, hosts, separator, key(), "[A-Za-z0-9+/=]{0,12}", ".{0,10}").prop_map(
                |(marker, hosts, separator, (algorithm, base64), noise, comment)| {
                    format!(
                        "{marker}{hosts}{separator}{algorithm}{separator}{base64}{noise} \
                         {comment}"
                    )
                }
            ),
            1 => "\\PC{0,80}",
            1 => ".{0,80}",
        ]
    }

    /// Reference glob: the obvious recursive definition.
    fn naive_glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| naive_glob(rest, &text[skip..])),
            Some((byte, rest)) => match text.split_first() {
                Some((first, remaining)) if *byte == b'?' || byte == first => {
                    naive_glob(rest, remaining)
                }
                _ => false,
            },
        }
    }

    proptest! {
        #[test]
        fn arbitrary_lines_and_hosts_never_panic(
            line in line(),
            host in host(),
            port in any::<u16>(),
        ) {
            let name = lookup_name(&host, port);
            if let Some(parsed) = parse_line(&line) {
                let _ = host_field_matches(&parsed.hosts, &name);
                // Parsing the line as part of a file agrees with parsing it alone.
                let file = ParsedFile::parse(line.as_bytes());
                prop_assert_eq!(file.index.lines, 1);
                let found = file.matching(&name).map_err(fail)?.len();
                prop_assert_eq!(found, usize::from(host_field_matches(&parsed.hosts, &name)));
            }
        }

        #[test]
        fn glob_agrees_with_the_reference(
            pattern in "[ab*?]{0,8}",
            text in "[ab]{0,10}",
        ) {
            prop_assert_eq!(
                wildcard_match(pattern.as_bytes(), text.as_bytes()),
                naive_glob(pattern.as_bytes(), text.as_bytes())
            );
        }

        #[test]
        fn recorded_lines_parse_back_and_match_their_host(
            host in host(),
            port in any::<u16>(),
            (algorithm, base64) in key(),
        ) {
            let key = PresentedKey { algorithm: &algorithm, base64: &base64 };
            let Ok(line) = new_entry_line(&host, port, &key) else {
                // Only names that could not be written safely are refused.
                let unsafe_character = |character: char| {
                    character.is_whitespace() || character.is_control() || ",*?!|#".contains(character)
                };
                let unsafe_host =
                    host.is_empty() || host.starts_with('@') || host.chars().any(unsafe_character);
                prop_assert!(unsafe_host, "{host:?} refused");
                return Ok(());
            };
            let parsed = parse_line(&line);
            prop_assert!(parsed.is_some(), "{line:?} does not parse");
            let Some(parsed) = parsed else {
                return Ok(());
            };
            prop_assert_eq!(parsed.marker, Marker::None);
            prop_assert!(parsed.consistent, "{line:?}");
            prop_assert_eq!(algorithm_family(&parsed.algorithm), algorithm_family(&algorithm));
            prop_assert_eq!(Some(parsed.key), key_digest(&base64));
            prop_assert!(host_field_matches(&parsed.hosts, &lookup_name(&host, port)), "{line:?}");
            // Never broader than the host: another port or another name does not match.
            let other_port = if port == 22 { 2222 } else { 22 };
            prop_assert!(!host_field_matches(&parsed.hosts, &lookup_name(&host, other_port)));
            let longer = format!("{host}x");
            prop_assert!(!host_field_matches(&parsed.hosts, &lookup_name(&longer, port)));
        }

        #[test]
        fn hashed_lines_match_exactly_their_host(
            host in host(),
            port in any::<u16>(),
            salt in prop::array::uniform20(any::<u8>()),
            (algorithm, base64) in key(),
        ) {
            let name = lookup_name(&host, port);
            let mut mac = Hmac::<Sha1>::new_from_slice(&salt).map_err(fail)?;
            mac.update(name.as_bytes());
            let hash = mac.finalize().into_bytes();
            let line = format!(
                "|1|{}|{} {algorithm} {base64}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            );
            let parsed = parse_line(&line).ok_or_else(|| fail(format!("{line:?} does not parse")))?;
            prop_assert!(host_field_matches(&parsed.hosts, &name));
            let longer = format!("{name}x");
            prop_assert!(!host_field_matches(&parsed.hosts, &longer));
        }
    }

    /// A line of a file the host is then recorded into: noise, or a line about that very host
    /// (rendered once the host and its key are known).
    #[derive(Debug, Clone)]
    enum Earlier {
        Noise(String),
        AboutTheHost {
            marker: &'static str,
            /// 0: its lookup name, 1: `*`, 2: `!<lookup name>,*`.
            form: u8,
            /// 0: the presented key itself, 1: another key of its type, 2: `other`.
            choice: u8,
            other: (String, String),
        },
    }

    /// A key blob of `algorithm`'s type that differs from every blob [`key`] makes for it.
    fn same_type_key(algorithm: &str, seed: &str) -> String {
        let family = algorithm_family(algorithm).as_bytes();
        let mut blob = Vec::new();
        blob.extend_from_slice(&(family.len() as u32).to_be_bytes());
        blob.extend_from_slice(family);
        blob.extend_from_slice(b"another key: ");
        blob.extend_from_slice(seed.as_bytes());
        STANDARD.encode(blob)
    }

    fn earlier() -> impl Strategy<Value = Earlier> {
        prop_oneof![
            2 => line().prop_map(Earlier::Noise),
            1 => (
                prop::sample::select(vec!["", "@revoked ", "@cert-authority "]),
                0..3u8,
                0..3u8,
                key(),
            )
                .prop_map(|(marker, form, choice, other)| Earlier::AboutTheHost {
                    marker,
                    form,
                    choice,
                    other,
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Through the files: once recorded, a key is trusted for its host whatever else the
        /// file holds (garbage lines are skipped, other hosts do not interfere), unless an
        /// earlier line revokes it.
        #[test]
        fn appended_keys_are_trusted_through_the_files(
            before in prop::collection::vec(earlier(), 0..6),
            host in "[a-z][a-z0-9.-]{0,20}",
            port in any::<u16>(),
            (algorithm, base64) in key(),
        ) {
            let name = lookup_name(&host, port);
            let lines: Vec<String> = before
                .iter()
                .map(|line| match line {
                    Earlier::Noise(text) => text.clone(),
                    Earlier::AboutTheHost { marker, form, choice, other } => {
                        let pattern = match form {
                            0 => name.clone(),
                            1 => "*".to_string(),
                            _ => format!("!{name},*"),
                        };
                        let (key_type, blob) = match choice {
                            0 => (algorithm.clone(), base64.clone()),
                            1 => (algorithm.clone(), same_type_key(&algorithm, &other.1)),
                            _ => other.clone(),
                        };
                        format!("{marker}{pattern} {key_type} {blob}")
                    }
                })
                .collect();
            let directory = TempDir::new().map_err(fail)?;
            let file = directory.path().join("known_hosts");
            fs::write(&file, lines.join("\n")).map_err(fail)?;
            let files = [file.clone()];
            let key = PresentedKey { algorithm: &algorithm, base64: &base64 };
            let earlier = check(&files, &host, port, &key).map_err(fail)?;
            append(&file, &host, port, &key).map_err(fail)?;
            let later = check(&files, &host, port, &key).map_err(fail)?;
            match earlier {
                // Nothing said anything about this key: now it is trusted, on the last line.
                Verdict::Unknown | Verdict::OtherType { .. } => {
                    let count = fs::read_to_string(&file).map_err(fail)?.lines().count();
                    prop_assert_eq!(later, Verdict::Trusted { file: file.clone(), line: count });
                }
                // An earlier line with another key of this type: the recorded one now wins.
                Verdict::Changed { .. } => {
                    prop_assert!(matches!(later, Verdict::Trusted { .. }), "{later:?}");
                }
                // Already trusted, or revoked: the earlier line still decides.
                other => prop_assert_eq!(later, other),
            }
        }
    }

    proptest! {
        /// The per-file index (lines of plain names found by name, the others matched one by
        /// one) finds exactly the lines that match when each line is tried, in file order.
        #[test]
        fn the_index_finds_what_matching_each_line_finds(
            lines in prop::collection::vec(
                prop_oneof![
                    line(),
                    (host(), key()).prop_map(|(host, (algorithm, base64))| {
                        format!("{host},{} {algorithm} {base64}", lookup_name(&host, 2222))
                    }),
                ],
                0..12,
            ),
            host in host(),
            port in prop::sample::select(vec![22u16, 2222]),
            chunk_size in 1usize..40,
        ) {
            let text = lines.join("\n");
            let file = ParsedFile::parse(text.as_bytes());
            let name = lookup_name(&host, port);
            let found: Vec<usize> =
                file.matching(&name).map_err(fail)?.iter().map(|entry| entry.line).collect();
            // Indexed from the file in small chunks (lines cross them), not kept in memory.
            let directory = TempDir::new().map_err(fail)?;
            let path = directory.path().join("known_hosts");
            fs::write(&path, &text).map_err(fail)?;
            let mut from_file = ParsedFile {
                file: Some(File::open(&path).map_err(fail)?),
                ..ParsedFile::default()
            };
            from_file.file_length = from_file
                .index_lines(text.as_bytes(), false, chunk_size)
                .map_err(fail)?;
            prop_assert!(from_file.tail.is_empty());
            prop_assert_eq!(from_file.index.lines, file.index.lines);
            prop_assert_eq!(from_file.newlines, file.newlines);
            prop_assert_eq!(from_file.ends_with_newline, file.ends_with_newline);
            let from_file: Vec<usize> =
                from_file.matching(&name).map_err(fail)?.iter().map(|entry| entry.line).collect();
            prop_assert_eq!(&from_file, &found);
            let expected: Vec<usize> = text
                .split('\n')
                .enumerate()
                .filter_map(|(index, line)| {
                    let parsed = parse_line(line)?;
                    host_field_matches(&parsed.hosts, &name).then_some(index + 1)
                })
                .collect();
            prop_assert_eq!(found, expected);
        }

        /// The index's hash sees names as OpenSSH compares them: ASCII case does not count.
        #[test]
        fn name_hash_ignores_ascii_case(name in prop::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(name_hash(&name), name_hash(&name.to_ascii_lowercase()));
            prop_assert_eq!(name_hash(&name), name_hash(&name.to_ascii_uppercase()));
        }

        /// Only the two markers OpenSSH knows, spelled exactly, make a marker line.
        #[test]
        fn markers_are_exact(marker in "@[A-Za-z-]{0,16}", (algorithm, base64) in key()) {
            let line = format!("{marker} web1 {algorithm} {base64}");
            let parsed = parse_line(&line);
            match marker.as_str() {
                "@revoked" => prop_assert_eq!(parsed.map(|line| line.marker), Some(Marker::Revoked)),
                "@cert-authority" => {
                    prop_assert_eq!(parsed.map(|line| line.marker), Some(Marker::CertAuthority))
                }
                _ => prop_assert!(parsed.is_none(), "{line:?}"),
            }
        }
    }

    /// A line of a known_hosts file in the certificate model: marker, pattern (0: the host's
    /// lookup name, 1: `*`, 2: `!<lookup name>,*`, 3: another host) and key (0: the CA,
    /// 1: another CA, 2: the certified host key).
    fn certificate_line() -> impl Strategy<Value = (&'static str, u8, u8)> {
        (
            prop::sample::select(vec!["", "@revoked ", "@cert-authority "]),
            0..4u8,
            0..3u8,
        )
    }

    proptest! {
        /// The certificate decision against a model of OpenSSH's rules: trusted exactly when a
        /// `@cert-authority` line that applies carries the CA, no applicable `@revoked` line
        /// carries the CA or the host key, the certificate is a host certificate naming the
        /// host, and `now` is in its validity period.
        #[test]
        fn certificate_decision_follows_the_rules(
            lines in prop::collection::vec(certificate_line(), 0..6),
            host_type in any::<bool>(),
            principals in prop::collection::vec(
                prop::sample::select(vec!["web1", "WEB1", "web2", "*", "web?", "db"]),
                0..3,
            ),
            valid_after in 0..10u64,
            valid_before in 0..10u64,
            now in 0..10u64,
            port in prop::sample::select(vec![22u16, 2222]),
        ) {
            let authority = STANDARD.encode(b"\0\0\0\x0bssh-ed25519 the CA");
            let other = STANDARD.encode(b"\0\0\0\x0bssh-ed25519 another CA");
            let host_key = STANDARD.encode(b"\0\0\0\x0bssh-ed25519 the host");
            let name = lookup_name("web1", port);
            let text: Vec<String> = lines
                .iter()
                .map(|(marker, pattern, key)| {
                    let pattern = match pattern {
                        0 => name.clone(),
                        1 => "*".to_string(),
                        2 => format!("!{name},*"),
                        _ => "web2".to_string(),
                    };
                    let key = [&authority, &other, &host_key][usize::from(*key)];
                    format!("{marker}{pattern} ssh-ed25519 {key}")
                })
                .collect();
            let file = ParsedFile::parse(text.join("\n").as_bytes());
            let matched: Vec<Matched> =
                file.matching(&name).map_err(fail)?.iter().map(|entry| entry.matched(Path::new("f"))).collect();
            let principals: Vec<String> = principals.iter().map(|name| name.to_string()).collect();
            let certificate = PresentedCertificate {
                key: PresentedKey { algorithm: "ssh-ed25519", base64: &host_key },
                authority: PresentedKey { algorithm: "ssh-ed25519", base64: &authority },
                host_type,
                principals: &principals,
                valid_after,
                valid_before,
            };
            let applies = |line: &(&str, u8, u8), marker: &str, key: u8| {
                line.0 == marker && line.1 < 2 && line.2 == key
            };
            let revoked = lines
                .iter()
                .any(|line| applies(line, "@revoked ", 0) || applies(line, "@revoked ", 2));
            let authority_known = lines.iter().any(|line| applies(line, "@cert-authority ", 0));
            let named = principals
                .iter()
                .any(|principal| ["web1", "WEB1", "*", "web?"].contains(&principal.as_str()));
            let expected = !revoked
                && authority_known
                && host_type
                && named
                && valid_after <= now
                && now < valid_before;
            let verdict = decide_certificate(&matched, "web1", &certificate, now);
            prop_assert_eq!(
                matches!(verdict, CertificateVerdict::Trusted { .. }),
                expected,
                "{:?} -> {:?}", text, verdict
            );
            if revoked {
                let is_revoked = matches!(verdict, CertificateVerdict::Revoked { .. });
                prop_assert!(is_revoked, "{:?}", verdict);
            }
        }
    }
}
