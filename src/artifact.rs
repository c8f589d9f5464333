//! The release artifact: reading and validating a release tarball (`.tar.gz`) once.
//!
//! This module owns:
//! - [`inspect_with`] / [`inspect_reader_with`]: a single streaming pass over the artifact that
//!   computes the sha256 and size of the whole file, checks gzip and tar integrity, enforces the
//!   member rules (no absolute or `..` paths, no name component over 255 bytes, no device files,
//!   symlinks that stay inside the release, no setuid/setgid bits unless the service's
//!   [`MemberPolicy`] allows them, ...) and builds the [`Manifest`] (per-file sha256, modes,
//!   sizes, link targets). Memory use does not depend on the artifact's size: data flows through
//!   fixed 64 KiB buffers and is never held whole in memory (only the manifest grows, with the
//!   number of members).
//! - the manifest text format stored on hosts ([`Manifest::to_text`], [`Manifest::from_text`]),
//! - differences between two manifests ([`Manifest::diff`], [`Diff`]), used by `diff`,
//!   `push --diff` and `status --verify`.
//!
//! It does no network I/O.
//!
//! # Stream layout and end-of-stream policy
//!
//! The file is read through a hashing reader (sha256 and byte count of the raw `.tar.gz`), then a
//! 64 KiB buffer, then a gzip decoder, then the tar parser. Gzip members are decoded one after the
//! other (the `MultiGzDecoder` semantics: concatenated `.gz` files form one stream), but the
//! member chaining is done here rather than by `flate2::MultiGzDecoder`, so that what follows the
//! last member can be judged the way `gzip -d` on the host judges it:
//! - trailing zero bytes after the last member (tape or block padding) are accepted; `gzip`
//!   ignores them silently;
//! - any other trailing bytes are an error: `gzip` reports "trailing garbage ignored" with exit
//!   status 2, which makes `tar -xzf` on the host fail, so such an artifact must not get that far;
//! - a stream that ends early (truncated file) is an error, as is a bad CRC or length trailer.
//!
//! After the tar end-of-archive marker, the rest of the decompressed stream must be zero bytes
//! (the usual record padding). Anything else would be data that the manifest does not describe.
//!
//! # Modes in the manifest
//!
//! Hosts extract without the archive's owners and then clear the "others may write" bit
//! (`chmod o-w`) of every entry that is not a symlink, so the manifest records each non-symlink
//! mode with `0o002` cleared: what the host holds after a push is what the manifest says, and
//! `status --verify` sees no drift. Setuid/setgid bits are judged on the mode as archived.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::mem;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::bufread::GzDecoder;
use sha2::{Digest, Sha256};
use tar::EntryType;

/// Size of every buffer used while streaming the artifact.
const BUFFER_SIZE: usize = 64 * 1024;

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Most bytes the tar parser may read for one member outside its file data: header blocks plus
/// GNU long-name and PAX records, which the tar crate holds in memory while parsing them. Without
/// a bound, a small artifact could decompress into a huge extension record and exhaust memory.
const HEADER_BUDGET: u64 = 1024 * 1024;

/// First line of the manifest text format.
const MANIFEST_HEADER: &str = "deploy-manifest 1";

/// Longest name component (file or directory name) Linux file systems accept (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// The setuid and setgid permission bits.
const SETID_BITS: u32 = 0o6000;

/// The "others may write" permission bit, cleared on hosts (see the module documentation).
const OTHERS_WRITE: u32 = 0o002;

/// Longest excerpt of hostile input quoted back in a manifest parse error.
const QUOTE_LIMIT: usize = 60;

/// A validated release artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Where the artifact was read from (as given by the caller).
    pub path: PathBuf,
    /// sha256 of the whole `.tar.gz` file, 64 lowercase hex digits.
    pub sha256: String,
    /// Size of the `.tar.gz` file in bytes.
    pub size: u64,
    /// Sum of the sizes of the regular files in the archive.
    pub unpacked_size: u64,
    /// Every member of the archive (except the root directory `.`), sorted by path.
    pub manifest: Manifest,
}

/// Member rules that depend on the service the artifact is pushed for. The default is the strict
/// policy: setuid/setgid members are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MemberPolicy {
    /// Accept members whose mode has the setuid or setgid bit (`allow_setid = true`).
    pub allow_setid: bool,
}

/// The members of a release, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// One member of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalized relative path: no leading `./`, no trailing `/`, no `.` or `..` components.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`); for entries read from an artifact, without `0o002`
    /// unless the entry is a symlink (see the module documentation).
    pub mode: u32,
    /// Size in bytes for regular files, 0 for everything else.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        sha256: String,
    },
    Directory,
    /// `target` is the link text exactly as stored in the archive.
    Symlink {
        target: String,
    },
    /// `target` is the normalized path of an earlier regular file of the archive.
    Hardlink {
        target: String,
    },
}

/// File-level difference between two manifests; every list is sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Diff {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub removed: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Why an artifact was refused. Every message starts with the artifact path.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{}: cannot open artifact: {io}", .path.display())]
    Open { path: PathBuf, io: io::Error },
    #[error("{}: cannot read artifact: {io}", .path.display())]
    Read { path: PathBuf, io: io::Error },
    #[error("{}: not a gzip file: {reason}", .path.display())]
    NotGzip { path: PathBuf, reason: String },
    #[error("{}: corrupt or truncated archive: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: member `{}`: {reason}", .path.display(), printable(.member))]
    Member {
        path: PathBuf,
        member: String,
        reason: String,
    },
    #[error("{}: archive has no entries", .path.display())]
    Empty { path: PathBuf },
}

/// Opens `path` and inspects it under `policy` (the service's `allow_setid`; the default policy
/// is the strict one); see [`inspect_reader_with`].
pub fn inspect_with(path: &Path, policy: &MemberPolicy) -> Result<Artifact, ArtifactError> {
    let file = File::open(path).map_err(|io| ArtifactError::Open {
        path: path.to_path_buf(),
        io,
    })?;
    inspect_reader_with(file, path, policy)
}

/// Reads a `.tar.gz` stream once, to its end: validates it (member rules under `policy`) and
/// computes its digest and manifest. `name` is used in the result and in error messages.
pub fn inspect_reader_with<R: Read>(
    reader: R,
    name: &Path,
    policy: &MemberPolicy,
) -> Result<Artifact, ArtifactError> {
    let mut buffered = BufReader::with_capacity(BUFFER_SIZE, HashingReader::new(reader));
    check_gzip_magic(&mut buffered, name)?;

    let budget = Rc::new(Cell::new(HEADER_BUDGET));
    let mut archive = tar::Archive::new(Budgeted {
        inner: GzipMembers::new(buffered),
        remaining: Rc::clone(&budget),
    });
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let scanned = scan_members(&mut archive, name, policy, &mut buffer, &budget);
    let mut stream = archive.into_inner().inner;
    let (entries, unpacked_size) = match scanned {
        Ok(result) => result,
        Err(Failure::Rejected(error)) => return Err(error),
        Err(Failure::Stream(error)) => return Err(stream.classify(error, name)),
    };

    // The tar parser stops at the end-of-archive marker; read the rest so the digest covers the
    // whole file and the gzip trailers are verified. (`stream` is past the budget guard.)
    match drain_zeros(&mut stream, &mut buffer) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ArtifactError::Corrupt {
                path: name.to_path_buf(),
                reason: "non-zero data after the tar end-of-archive marker".to_string(),
            });
        }
        Err(error) => return Err(stream.classify(error, name)),
    }

    if entries.is_empty() {
        return Err(ArtifactError::Empty {
            path: name.to_path_buf(),
        });
    }
    let (sha256, size) = stream.finish().map_err(|error| ArtifactError::Corrupt {
        path: name.to_path_buf(),
        reason: error.to_string(),
    })?;
    Ok(Artifact {
        path: name.to_path_buf(),
        sha256,
        size,
        unpacked_size,
        manifest: Manifest { entries },
    })
}

impl Manifest {
    /// The line format stored on hosts: a header line, then one line per entry,
    /// `kind TAB mode TAB size TAB digest-or-target TAB path`, each line ending in a newline
    /// (tabs shown as `␉` below):
    ///
    /// ```text
    /// deploy-manifest 1
    /// d ␉ 0755 ␉ 0 ␉ - ␉ bin
    /// f ␉ 0755 ␉ 123 ␉ <sha256> ␉ bin/app
    /// l ␉ 0777 ␉ 0 ␉ app ␉ bin/current
    /// h ␉ 0644 ␉ 0 ␉ bin/app ␉ bin/app-copy
    /// ```
    ///
    /// Entries produced by [`inspect_with`] never contain tabs, newlines or other control
    /// characters; a hand-built manifest that does produces text that [`Manifest::from_text`]
    /// refuses.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(MANIFEST_HEADER.len() + 1 + self.entries.len() * 96);
        text.push_str(MANIFEST_HEADER);
        text.push('\n');
        for entry in &self.entries {
            let (code, detail) = match &entry.kind {
                EntryKind::File { sha256 } => ('f', sha256.as_str()),
                EntryKind::Directory => ('d', "-"),
                EntryKind::Symlink { target } => ('l', target.as_str()),
                EntryKind::Hardlink { target } => ('h', target.as_str()),
            };
            text.push_str(&format!(
                "{code}\t{:04o}\t{}\t{detail}\t{}\n",
                entry.mode & 0o7777,
                entry.size,
                entry.path
            ));
        }
        text
    }

    /// Strict parser for [`Manifest::to_text`] output. The text may come from a remote host, so
    /// every field is checked; errors name the 1-based line number. Entries are returned sorted
    /// by path; a path that appears twice is an error. The final newline is optional.
    pub fn from_text(text: &str) -> Result<Manifest, String> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = body.split('\n');
        match lines.next() {
            Some(MANIFEST_HEADER) => {}
            Some(other) => {
                return Err(format!(
                    "line 1: expected header `{MANIFEST_HEADER}`, found `{}`",
                    quote(other)
                ));
            }
            None => return Err(format!("line 1: missing header `{MANIFEST_HEADER}`")),
        }
        let mut by_path: BTreeMap<String, (usize, Entry)> = BTreeMap::new();
        for (index, line) in lines.enumerate() {
            let number = index + 2;
            let entry =
                parse_manifest_line(line).map_err(|reason| format!("line {number}: {reason}"))?;
            if let Some((first, _)) = by_path.get(&entry.path) {
                return Err(format!(
                    "line {number}: duplicate path `{}` (first on line {first})",
                    quote(&entry.path)
                ));
            }
            by_path.insert(entry.path.clone(), (number, entry));
        }
        Ok(Manifest {
            entries: by_path.into_values().map(|(_, entry)| entry).collect(),
        })
    }

    /// Differences from `self` (older) to `newer`: `added` are paths only in `newer`, `removed`
    /// paths only in `self`, `modified` paths in both whose kind, content digest, mode or link
    /// target differ. Directories count too.
    pub fn diff(&self, newer: &Manifest) -> Diff {
        let older_entries: BTreeMap<&str, &Entry> = self
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let newer_entries: BTreeMap<&str, &Entry> = newer
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let mut diff = Diff::default();
        for (path, entry) in &newer_entries {
            match older_entries.get(path) {
                None => diff.added.push((*path).to_string()),
                Some(old) if old.kind != entry.kind || old.mode != entry.mode => {
                    diff.modified.push((*path).to_string());
                }
                Some(_) => {}
            }
        }
        for path in older_entries.keys() {
            if !newer_entries.contains_key(path) {
                diff.removed.push((*path).to_string());
            }
        }
        diff
    }

    /// The manifest as it can be compared with a host's files: hardlinks become the files they
    /// share content with, and symlink modes (meaningless on Linux) are ignored.
    pub fn comparable(&self) -> Manifest {
        let files: BTreeMap<&str, (&EntryKind, u32, u64)> = self
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), (&entry.kind, entry.mode, entry.size)))
            .collect();
        let entries = self
            .entries
            .iter()
            .map(|entry| match &entry.kind {
                EntryKind::Hardlink { target } => match files.get(target.as_str()) {
                    Some((kind @ EntryKind::File { .. }, mode, size)) => Entry {
                        path: entry.path.clone(),
                        kind: (*kind).clone(),
                        mode: *mode,
                        size: *size,
                    },
                    _ => entry.clone(),
                },
                EntryKind::Symlink { .. } => Entry {
                    mode: 0o777,
                    ..entry.clone()
                },
                _ => entry.clone(),
            })
            .collect();
        Manifest { entries }
    }

    /// A copy without the entries equal to or under any of `prefixes` (the service's
    /// `shared_paths`, which hosts replace by links). Prefixes are normalized (`./`, repeated and
    /// trailing `/` ignored); a prefix that normalizes to nothing is ignored.
    pub fn without_paths(&self, prefixes: &[String]) -> Manifest {
        let prefixes: Vec<String> = prefixes
            .iter()
            .map(|prefix| {
                prefix
                    .split('/')
                    .filter(|component| !component.is_empty() && *component != ".")
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .filter(|prefix| !prefix.is_empty())
            .collect();
        let entries = self
            .entries
            .iter()
            .filter(|entry| {
                !prefixes
                    .iter()
                    .any(|prefix| is_same_or_under(&entry.path, prefix))
            })
            .cloned()
            .collect();
        Manifest { entries }
    }
}

fn is_same_or_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest text parsing
// ---------------------------------------------------------------------------------------------

fn parse_manifest_line(line: &str) -> Result<Entry, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [code, mode, size, detail, path] = fields.as_slice() else {
        return Err(format!(
            "expected 5 tab-separated fields, found {} in `{}`",
            fields.len(),
            quote(line)
        ));
    };
    let mode = parse_mode(mode)?;
    let size = parse_size(size)?;
    check_manifest_path(path).map_err(|reason| format!("path `{}`: {reason}", quote(path)))?;
    let kind = match *code {
        "f" => {
            if !is_sha256_hex(detail) {
                return Err(format!(
                    "expected a sha256 (64 lowercase hex digits), found `{}`",
                    quote(detail)
                ));
            }
            EntryKind::File {
                sha256: (*detail).to_string(),
            }
        }
        "d" => {
            if *detail != "-" {
                return Err(format!(
                    "expected `-` for a directory, found `{}`",
                    quote(detail)
                ));
            }
            EntryKind::Directory
        }
        "l" => {
            if detail.is_empty() || has_control(detail) {
                return Err(format!("bad symlink target `{}`", quote(detail)));
            }
            EntryKind::Symlink {
                target: (*detail).to_string(),
            }
        }
        "h" => {
            check_manifest_path(detail)
                .map_err(|reason| format!("hardlink target `{}`: {reason}", quote(detail)))?;
            EntryKind::Hardlink {
                target: (*detail).to_string(),
            }
        }
        other => {
            return Err(format!(
                "unknown entry kind `{}` (expected f, d, l or h)",
                quote(other)
            ));
        }
    };
    if size != 0 && !matches!(kind, EntryKind::File { .. }) {
        return Err(format!("size must be 0 for kind `{code}`, found {size}"));
    }
    Ok(Entry {
        path: (*path).to_string(),
        kind,
        mode,
        size,
    })
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let well_formed = text.len() == 4 && text.bytes().all(|byte| (b'0'..=b'7').contains(&byte));
    if !well_formed {
        return Err(format!(
            "bad mode `{}` (expected 4 octal digits)",
            quote(text)
        ));
    }
    u32::from_str_radix(text, 8).map_err(|_| format!("bad mode `{}`", quote(text)))
}

fn parse_size(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!(
            "bad size `{}` (expected decimal digits)",
            quote(text)
        ));
    }
    text.parse::<u64>()
        .map_err(|_| format!("bad size `{}` (too large)", quote(text)))
}

/// A normalized relative path: non-empty components, none `.` or `..`, no control characters.
fn check_manifest_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if has_control(path) {
        return Err("contains control characters");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    for component in path.split('/') {
        match component {
            "" => return Err("empty path component"),
            "." | ".." => return Err("`.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

// ---------------------------------------------------------------------------------------------
// Streaming: hashing reader and gzip member chain
// ---------------------------------------------------------------------------------------------

/// sha256 of a byte stream, computed on a thread of its own so that the digest of the whole
/// file costs no time on the decompressing path (two cores: hashing and inflating overlap).
/// Chunks travel through a bounded channel: memory stays constant. If no thread can be
/// started, it hashes in place.
struct BackgroundHasher {
    sender: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<Sha256>>,
    in_place: Option<Box<Sha256>>,
}

impl BackgroundHasher {
    fn new() -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let spawned = std::thread::Builder::new()
            .name("artifact-sha256".to_string())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for chunk in receiver {
                    hasher.update(&chunk);
                }
                hasher
            });
        match spawned {
            Ok(worker) => BackgroundHasher {
                sender: Some(sender),
                worker: Some(worker),
                in_place: None,
            },
            Err(_) => BackgroundHasher {
                sender: None,
                worker: None,
                in_place: Some(Box::new(Sha256::new())),
            },
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(hasher) = &mut self.in_place {
            hasher.update(data);
            return;
        }
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|sender| sender.send(data.to_vec()).is_ok());
        if !sent {
            // The worker is gone: nothing more reaches it, and `finish` reports it.
            self.sender = None;
        }
    }

    fn finish(mut self) -> io::Result<String> {
        if let Some(hasher) = self.in_place.take() {
            return Ok(hex(&(*hasher).finalize()));
        }
        let complete = self.sender.take().is_some();
        let worker = self.worker.take();
        match (complete, worker.map(std::thread::JoinHandle::join)) {
            (true, Some(Ok(hasher))) => Ok(hex(&hasher.finalize())),
            _ => Err(io::Error::other("the sha256 worker thread stopped")),
        }
    }
}

/// Passes bytes through while computing their sha256 and count. Remembers the first read error
/// of the underlying source so that it can be told apart from decoding errors.
struct HashingReader<R> {
    inner: R,
    hasher: BackgroundHasher,
    bytes: u64,
    failure: Option<io::Error>,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: BackgroundHasher::new(),
            bytes: 0,
            failure: None,
        }
    }

    fn finish(self) -> io::Result<(String, u64)> {
        Ok((self.hasher.finish()?, self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buffer) {
                Ok(count) => {
                    let read = buffer.get(..count).unwrap_or_default();
                    self.hasher.update(read);
                    self.bytes += read.len() as u64;
                    return Ok(read.len());
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let copy = io::Error::new(error.kind(), error.to_string());
                    if self.failure.is_none() {
                        self.failure = Some(error);
                    }
                    return Err(copy);
                }
            }
        }
    }
}

type Source<R> = BufReader<HashingReader<R>>;

enum Stage<R> {
    /// Decoding a gzip member.
    Member(Box<GzDecoder<Source<R>>>),
    /// The last member and any zero padding after it have been read.
    Finished(Source<R>),
    /// Only seen if a transition between the two was interrupted; never in practice.
    Broken,
}

/// Decompresses consecutive gzip members as one stream (see the module documentation for what
/// may follow the last member).
struct GzipMembers<R> {
    stage: Stage<R>,
    failed: bool,
}

impl<R: Read> GzipMembers<R> {
    fn new(source: Source<R>) -> Self {
        GzipMembers {
            stage: Stage::Member(Box::new(GzDecoder::new(source))),
            failed: false,
        }
    }

    fn source_mut(&mut self) -> Option<&mut Source<R>> {
        match &mut self.stage {
            Stage::Member(decoder) => Some(decoder.get_mut()),
            Stage::Finished(source) => Some(source),
            Stage::Broken => None,
        }
    }

    /// Turns an error met while streaming into the matching [`ArtifactError`].
    fn classify(&mut self, error: io::Error, name: &Path) -> ArtifactError {
        let read_failure = self
            .source_mut()
            .and_then(|source| source.get_mut().failure.take());
        match read_failure {
            Some(io) => ArtifactError::Read {
                path: name.to_path_buf(),
                io,
            },
            None => ArtifactError::Corrupt {
                path: name.to_path_buf(),
                reason: describe(&error),
            },
        }
    }

    /// sha256 (hex) and byte count of everything read from the source.
    fn finish(self) -> io::Result<(String, u64)> {
        match self.stage {
            Stage::Member(decoder) => (*decoder).into_inner().into_inner().finish(),
            Stage::Finished(source) => source.into_inner().finish(),
            Stage::Broken => Err(io::Error::other("gzip stream in an unexpected state")),
        }
    }

    /// Called when the current member has ended (trailer verified): looks at what follows.
    fn next_member(&mut self) -> io::Result<()> {
        let Stage::Member(decoder) = mem::replace(&mut self.stage, Stage::Broken) else {
            return Err(io::Error::other("gzip stream in an unexpected state"));
        };
        let mut source = decoder.into_inner();
        let next = source.fill_buf();
        let next = match next {
            Ok(buffer) => buffer.first().copied(),
            Err(error) => {
                self.stage = Stage::Finished(source);
                return Err(error);
            }
        };
        match next {
            None => {
                self.stage = Stage::Finished(source);
                Ok(())
            }
            Some(byte) if byte == GZIP_MAGIC[0] => {
                self.stage = Stage::Member(Box::new(GzDecoder::new(source)));
                Ok(())
            }
            Some(0) => {
                let only_zeros = skip_zeros(&mut source);
                self.stage = Stage::Finished(source);
                match only_zeros {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(trailing_garbage()),
                    Err(error) => Err(error),
                }
            }
            Some(_) => {
                self.stage = Stage::Finished(source);
                Err(trailing_garbage())
            }
        }
    }
}

impl<R: Read> Read for GzipMembers<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("gzip stream already failed"));
        }
        if buffer.is_empty() {
            return Ok(0);
        }
        loop {
            let result = match &mut self.stage {
                Stage::Member(decoder) => match decoder.read(buffer) {
                    Ok(0) => self.next_member().map(|()| None),
                    Ok(count) => Ok(Some(count)),
                    Err(error) => Err(error),
                },
                Stage::Finished(_) => Ok(Some(0)),
                Stage::Broken => Err(io::Error::other("gzip stream in an unexpected state")),
            };
            match result {
                Ok(Some(count)) => return Ok(count),
                Ok(None) => {}
                Err(error) => {
                    self.failed = true;
                    return Err(error);
                }
            }
        }
    }
}

/// Caps how much the tar parser reads between resets of `remaining` (see [`HEADER_BUDGET`]).
struct Budgeted<R> {
    inner: R,
    remaining: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let remaining = self.remaining.get();
        if remaining == 0 && !buffer.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "member metadata (header, long name or pax records) exceeds 1 MiB",
            ));
        }
        let limit =
            usize::try_from(remaining).map_or(buffer.len(), |limit| limit.min(buffer.len()));
        let count = self
            .inner
            .read(buffer.get_mut(..limit).unwrap_or_default())?;
        self.remaining.set(remaining.saturating_sub(count as u64));
        Ok(count)
    }
}

fn trailing_garbage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "unexpected data after the end of the gzip stream",
    )
}

/// Consumes the source to its end; `false` (stopping early) if a non-zero byte is found.
fn skip_zeros(source: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let buffer = source.fill_buf()?;
        if buffer.is_empty() {
            return Ok(true);
        }
        if buffer.iter().any(|byte| *byte != 0) {
            return Ok(false);
        }
        let length = buffer.len();
        source.consume(length);
    }
}

/// Reads `reader` to its end through `buffer`; `false` (stopping early) on a non-zero byte.
fn drain_zeros(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
    loop {
        let count = reader.read(buffer)?;
        if count == 0 {
            return Ok(true);
        }
        if buffer
            .get(..count)
            .unwrap_or_default()
            .iter()
            .any(|byte| *byte != 0)
        {
            return Ok(false);
        }
    }
}

fn check_gzip_magic<R: Read>(source: &mut Source<R>, name: &Path) -> Result<(), ArtifactError> {
    let head = match source.fill_buf() {
        Ok(head) => head,
        Err(error) => {
            let io = source.get_mut().failure.take().unwrap_or(error);
            return Err(ArtifactError::Read {
                path: name.to_path_buf(),
                io,
            });
        }
    };
    let reason = if head.is_empty() {
        "the file is empty"
    } else if head
        .iter()
        .zip(GZIP_MAGIC)
        .any(|(byte, magic)| *byte != magic)
    {
        "it does not start with the gzip signature (1f 8b)"
    } else {
        return Ok(());
    };
    Err(ArtifactError::NotGzip {
        path: name.to_path_buf(),
        reason: reason.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Tar members
// ---------------------------------------------------------------------------------------------

enum Failure {
    /// A member broke a rule.
    Rejected(ArtifactError),
    /// Reading or decoding failed; classified by [`GzipMembers::classify`].
    Stream(io::Error),
}

/// What has been seen so far, to check how members relate to each other.
#[derive(Default)]
struct Layout {
    /// Every member path.
    members: HashSet<String>,
    /// Every proper ancestor directory of a member path.
    ancestors: HashSet<String>,
    /// Members that are not directories.
    non_directories: HashSet<String>,
    symlinks: HashSet<String>,
    /// Regular files and hardlinks to them: valid hardlink targets.
    regular_files: HashSet<String>,
}

/// Kind of a member before its data has been read.
enum Shape {
    File,
    Directory,
    Symlink(String),
    Hardlink(String),
}

fn scan_members<R: Read>(
    archive: &mut tar::Archive<R>,
    name: &Path,
    policy: &MemberPolicy,
    buffer: &mut [u8],
    budget: &Cell<u64>,
) -> Result<(Vec<Entry>, u64), Failure> {
    let mut entries = Vec::new();
    let mut layout = Layout::default();
    let mut unpacked_size: u64 = 0;
    let mut members = archive.entries().map_err(Failure::Stream)?;
    loop {
        budget.set(HEADER_BUDGET);
        let Some(member) = members.next() else {
            break;
        };
        let mut member = member.map_err(Failure::Stream)?;
        let raw_name = member.path_bytes().into_owned();
        let member_name = String::from_utf8_lossy(&raw_name).into_owned();
        let reject = |reason: String| {
            Failure::Rejected(ArtifactError::Member {
                path: name.to_path_buf(),
                member: member_name.clone(),
                reason,
            })
        };
        let entry_type = member.header().entry_type();

        if entry_type.is_pax_global_extensions() {
            check_global_extensions(&mut member).map_err(reject)?;
            continue;
        }
        check_local_extensions(&mut member).map_err(reject)?;

        let path = normalize_member_name(&raw_name).map_err(reject)?;
        let shape = match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                if raw_name.ends_with(b"/") {
                    return Err(reject("regular file name ends with `/`".to_string()));
                }
                Shape::File
            }
            EntryType::Directory => Shape::Directory,
            EntryType::Symlink => {
                let target = link_text(&member).map_err(reject)?;
                let Some(path) = &path else {
                    return Err(reject("the release root cannot be a symlink".to_string()));
                };
                check_symlink_target(path, &target).map_err(reject)?;
                Shape::Symlink(target)
            }
            EntryType::Link => {
                let target = link_text(&member).map_err(reject)?;
                let target = normalize_member_name(target.as_bytes())
                    .map_err(|reason| reject(format!("hardlink target: {reason}")))?
                    .ok_or_else(|| reject("hardlink target is the release root".to_string()))?;
                if !layout.regular_files.contains(&target) {
                    return Err(reject(format!(
                        "hardlink target `{}` is not an earlier regular file of the archive",
                        printable(&target)
                    )));
                }
                Shape::Hardlink(target)
            }
            EntryType::Char | EntryType::Block => {
                return Err(reject("device files are not allowed".to_string()));
            }
            EntryType::Fifo => return Err(reject("fifos are not allowed".to_string())),
            EntryType::GNUSparse => {
                return Err(reject("sparse files are not allowed".to_string()));
            }
            other => {
                return Err(reject(format!(
                    "entry type {} is not allowed",
                    describe_entry_type(other)
                )));
            }
        };

        let mode = member
            .header()
            .mode()
            .map_err(|error| reject(format!("unreadable mode field: {error}")))?
            & 0o7777;
        // Symlink modes mean nothing on Linux (tar does not apply them); every other mode does,
        // the release root's included.
        if !matches!(shape, Shape::Symlink(_)) {
            check_setid(mode, policy).map_err(reject)?;
        }
        let Some(path) = path else {
            // The root directory `.` itself: allowed, not part of the manifest.
            if matches!(shape, Shape::Directory) && member.size() == 0 {
                continue;
            }
            return Err(reject(
                "names the release root but is not a directory".to_string(),
            ));
        };
        if !matches!(shape, Shape::File) && member.size() != 0 {
            return Err(reject(format!(
                "{} entry carries {} bytes of data",
                shape_name(&shape),
                member.size()
            )));
        }
        layout.admit(&path, &shape).map_err(reject)?;
        let mode = recorded_mode(mode, &shape);

        let (kind, size) = match shape {
            Shape::File => {
                budget.set(u64::MAX);
                let digest = digest_member(&mut member, buffer);
                budget.set(HEADER_BUDGET);
                let (sha256, size) = digest.map_err(|error| {
                    Failure::Stream(io::Error::new(
                        error.kind(),
                        format!("member `{}`: {}", printable(&member_name), describe(&error)),
                    ))
                })?;
                if size != member.size() {
                    return Err(Failure::Stream(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "member `{}`: data ends after {size} of {} bytes",
                            printable(&member_name),
                            member.size()
                        ),
                    )));
                }
                unpacked_size = unpacked_size
                    .checked_add(size)
                    .ok_or_else(|| reject("total unpacked size overflows".to_string()))?;
                (EntryKind::File { sha256 }, size)
            }
            Shape::Directory => (EntryKind::Directory, 0),
            Shape::Symlink(target) => (EntryKind::Symlink { target }, 0),
            Shape::Hardlink(target) => (EntryKind::Hardlink { target }, 0),
        };
        entries.push(Entry {
            path,
            kind,
            mode,
            size,
        });
    }
    entries.sort_by(|left, right| left.path.cmp(&right.path));
    Ok((entries, unpacked_size))
}

impl Layout {
    /// Records `path`, refusing duplicates and members that would be written through a symlink or
    /// below a non-directory (or that turn an earlier member's parent into one).
    fn admit(&mut self, path: &str, shape: &Shape) -> Result<(), String> {
        if self.members.contains(path) {
            return Err("duplicate member".to_string());
        }
        for ancestor in ancestors(path) {
            if self.symlinks.contains(ancestor) {
                return Err(format!("lies under symlink `{}`", printable(ancestor)));
            }
            if self.non_directories.contains(ancestor) {
                return Err(format!(
                    "parent `{}` is not a directory",
                    printable(ancestor)
                ));
            }
        }
        let is_directory = matches!(shape, Shape::Directory);
        if !is_directory && self.ancestors.contains(path) {
            return Err(format!(
                "is a {} but earlier members lie under it",
                shape_name(shape)
            ));
        }
        for ancestor in ancestors(path) {
            if !self.ancestors.contains(ancestor) {
                self.ancestors.insert(ancestor.to_string());
            }
        }
        self.members.insert(path.to_string());
        if !is_directory {
            self.non_directories.insert(path.to_string());
        }
        match shape {
            Shape::Symlink(_) => {
                self.symlinks.insert(path.to_string());
            }
            Shape::File | Shape::Hardlink(_) => {
                self.regular_files.insert(path.to_string());
            }
            Shape::Directory => {}
        }
        Ok(())
    }
}

/// Proper ancestors of a normalized path: `a/b/c` gives `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .filter_map(move |(index, _)| path.get(..index))
}

fn shape_name(shape: &Shape) -> &'static str {
    match shape {
        Shape::File => "regular file",
        Shape::Directory => "directory",
        Shape::Symlink(_) => "symlink",
        Shape::Hardlink(_) => "hardlink",
    }
}

/// Refuses setuid/setgid bits in `mode` unless `policy` allows them; names the bits.
fn check_setid(mode: u32, policy: &MemberPolicy) -> Result<(), String> {
    if policy.allow_setid || mode & SETID_BITS == 0 {
        return Ok(());
    }
    let bits = match mode & SETID_BITS {
        0o4000 => "the setuid bit (04000)",
        0o2000 => "the setgid bit (02000)",
        _ => "the setuid and setgid bits (06000)",
    };
    Err(format!(
        "mode {mode:04o} has {bits}, which is refused unless the service sets `allow_setid = true`"
    ))
}

/// The mode the manifest records for a member: what the host holds once it has cleared the
/// "others may write" bit of every non-symlink entry.
fn recorded_mode(mode: u32, shape: &Shape) -> u32 {
    match shape {
        Shape::Symlink(_) => mode,
        Shape::File | Shape::Directory | Shape::Hardlink(_) => mode & !OTHERS_WRITE,
    }
}

/// Normalizes a member name: `Ok(None)` for the release root (`.`, `./`). Refuses absolute
/// names, `..` components, control characters and components longer than [`NAME_MAX`] bytes.
fn normalize_member_name(raw: &[u8]) -> Result<Option<String>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "name is not valid UTF-8".to_string())?;
    if text.is_empty() {
        return Err("empty name".to_string());
    }
    if has_control(text) {
        return Err("name contains control characters".to_string());
    }
    if text.starts_with('/') {
        return Err("absolute path".to_string());
    }
    let mut components = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("path leaves the release directory".to_string()),
            other if other.len() > NAME_MAX => {
                return Err(format!(
                    "name component `{}` is {} bytes, longer than {NAME_MAX} bytes",
                    quote(other),
                    other.len()
                ));
            }
            other => components.push(other),
        }
    }
    if components.is_empty() {
        return Ok(None);
    }
    Ok(Some(components.join("/")))
}

fn link_text<R: Read>(member: &tar::Entry<'_, R>) -> Result<String, String> {
    let raw = member
        .link_name_bytes()
        .ok_or_else(|| "link has no target".to_string())?;
    let text =
        std::str::from_utf8(&raw).map_err(|_| "link target is not valid UTF-8".to_string())?;
    if text.is_empty() {
        return Err("link has an empty target".to_string());
    }
    if has_control(text) {
        return Err("link target contains control characters".to_string());
    }
    Ok(text.to_string())
}

/// A symlink target must be relative and, resolved against the symlink's parent directory, stay
/// inside the release. To make the lexical check sound even when other symlinks are involved,
/// `..` may only appear at the start of the target (`../../lib/x`, not `lib/../../x`); together
/// with the rule that no member lies under a symlink, the target then cannot climb further than
/// the lexical check says.
fn check_symlink_target(path: &str, target: &str) -> Result<(), String> {
    if target.starts_with('/') {
        return Err(format!(
            "symlink points outside the release (absolute target `{}`)",
            printable(target)
        ));
    }
    let parent_depth = path.matches('/').count();
    let mut climbs = 0;
    let mut descended = false;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if descended => {
                return Err(format!(
                    "symlink target `{}` uses `..` after a directory name; only leading `..` are allowed",
                    printable(target)
                ));
            }
            ".." => {
                climbs += 1;
                if climbs > parent_depth {
                    return Err(format!(
                        "symlink points outside the release (target `{}`)",
                        printable(target)
                    ));
                }
            }
            _ => descended = true,
        }
    }
    Ok(())
}

/// Refuses PAX extensions the host's tar would honour but the manifest would not reflect.
fn check_local_extensions<R: Read>(member: &mut tar::Entry<'_, R>) -> Result<(), String> {
    let Some(extensions) = member
        .pax_extensions()
        .map_err(|error| format!("unreadable pax extended header: {error}"))?
    else {
        return Ok(());
    };
    for extension in extensions {
        let extension =
            extension.map_err(|error| format!("malformed pax extended header: {error}"))?;
        if extension.key_bytes().starts_with(b"GNU.sparse") {
            return Err("sparse files are not allowed".to_string());
        }
    }
    Ok(())
}

/// A global PAX header (as written by `git archive`) is allowed, but not one that would change
/// the names, links or sizes of the members that follow.
fn check_global_extensions<R: Read>(member: &mut tar::Entry<'_, R>) -> Result<(), String> {
    let Some(extensions) = member
        .pax_extensions()
        .map_err(|error| format!("unreadable pax global header: {error}"))?
    else {
        return Ok(());
    };
    for extension in extensions {
        let extension =
            extension.map_err(|error| format!("malformed pax global header: {error}"))?;
        let key = extension.key_bytes();
        if matches!(key, b"path" | b"linkpath" | b"size") || key.starts_with(b"GNU.sparse") {
            return Err(format!(
                "pax global header sets `{}`, which is not supported",
                printable(&String::from_utf8_lossy(key))
            ));
        }
    }
    Ok(())
}

/// sha256 and length of a member's data, checking that all the declared bytes are there.
fn digest_member(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    loop {
        let count = match reader.read(buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let data = buffer.get(..count).unwrap_or_default();
        hasher.update(data);
        size += data.len() as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

fn describe_entry_type(entry_type: EntryType) -> String {
    let byte = entry_type.as_byte();
    let name = match entry_type {
        EntryType::GNULongName | EntryType::GNULongLink => "GNU long-name header",
        EntryType::XHeader => "pax extended header",
        _ => "unsupported",
    };
    if byte.is_ascii_graphic() {
        format!("`{}` ({name})", char::from(byte))
    } else {
        format!("0x{byte:02x} ({name})")
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// `text` with control characters escaped, for error messages.
fn printable(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_control() {
            output.extend(character.escape_default());
        } else {
            output.push(character);
        }
    }
    output
}

/// A short printable excerpt of hostile input.
fn quote(text: &str) -> String {
    let mut excerpt: String = text.chars().take(QUOTE_LIMIT).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    printable(&excerpt)
}

/// An I/O error's message with the messages of its causes, which the tar crate keeps apart.
fn describe(error: &io::Error) -> String {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    use tar::{Builder, Header};

    const NAME: &str = "dist/app.tar.gz";

    fn sha256_hex(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A header whose name (and link name) are written as raw bytes, bypassing the builder's
    /// path checks.
    fn raw_header(name: &[u8], entry_type: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        header
    }

    struct Tarball(Builder<Vec<u8>>);

    impl Tarball {
        fn new() -> Self {
            Tarball(Builder::new(Vec::new()))
        }

        fn file(mut self, name: &str, mode: u32, data: &[u8]) -> Self {
            let header = raw_header(name.as_bytes(), EntryType::Regular, mode, data.len() as u64);
            self.0.append(&header, data).unwrap();
            self
        }

        fn raw_file(mut self, name: &[u8], data: &[u8]) -> Self {
            let header = raw_header(name, EntryType::Regular, 0o644, data.len() as u64);
            self.0.append(&header, data).unwrap();
            self
        }

        fn directory(mut self, name: &str, mode: u32) -> Self {
            let header = raw_header(name.as_bytes(), EntryType::Directory, mode, 0);
            self.0.append(&header, &[][..]).unwrap();
            self
        }

        fn link(mut self, entry_type: EntryType, name: &str, target: &str) -> Self {
            let mut header = raw_header(name.as_bytes(), entry_type, 0o777, 0);
            header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            header.set_cksum();
            self.0.append(&header, &[][..]).unwrap();
            self
        }

        fn symlink(self, name: &str, target: &str) -> Self {
            self.link(EntryType::Symlink, name, target)
        }

        fn hardlink(self, name: &str, target: &str) -> Self {
            self.link(EntryType::Link, name, target)
        }

        fn special(mut self, name: &str, entry_type: EntryType) -> Self {
            let mut header = raw_header(name.as_bytes(), entry_type, 0o644, 0);
            if entry_type == EntryType::GNUSparse {
                // A well-formed, empty sparse map, so the tar crate accepts the header.
                header.as_gnu_mut().unwrap().realsize = *b"00000000000\0";
                header.set_cksum();
            }
            self.0.append(&header, &[][..]).unwrap();
            self
        }

        fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
            self.0
                .append_pax_extensions(records.iter().copied())
                .unwrap();
            self
        }

        fn global_pax(mut self, records: &[(&str, &str)]) -> Self {
            let mut data = Vec::new();
            for (key, value) in records {
                let rest = 3 + key.len() + value.len();
                let mut length = rest + 1;
                while length.to_string().len() + rest != length {
                    length = length.to_string().len() + rest;
                }
                data.extend_from_slice(format!("{length} {key}={value}\n").as_bytes());
            }
            let header = raw_header(
                b"pax_global_header",
                EntryType::XGlobalHeader,
                0o666,
                data.len() as u64,
            );
            self.0.append(&header, &data[..]).unwrap();
            self
        }

        fn tar(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }

        fn gz(self) -> Vec<u8> {
            gzip(&self.tar())
        }
    }

    fn inspect_bytes(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        inspect_reader_with(bytes, Path::new(NAME), &MemberPolicy::default())
    }

    #[track_caller]
    fn assert_member_error(bytes: &[u8], expected_member: &str, reason_part: &str) {
        match inspect_bytes(bytes) {
            Err(ArtifactError::Member {
                path,
                member,
                reason,
            }) => {
                assert_eq!(path, Path::new(NAME));
                assert_eq!(member, expected_member);
                assert!(
                    reason.contains(reason_part),
                    "reason `{reason}` lacks `{reason_part}`"
                );
            }
            other => panic!("expected a member error for `{expected_member}`, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_corrupt(bytes: &[u8]) -> String {
        match inspect_bytes(bytes) {
            Err(error @ ArtifactError::Corrupt { .. }) => error.to_string(),
            other => panic!("expected a corrupt-archive error, got {other:?}"),
        }
    }

    fn sample() -> Tarball {
        Tarball::new()
            .directory("./", 0o755)
            .directory("./bin/", 0o755)
            .file("./bin/app", 0o100755, b"#!/bin/sh\necho hi\n")
            .directory("./config/", 0o750)
            .file("./config/app.env", 0o640, b"PORT=8080\n")
            .symlink("./bin/current", "app")
            .symlink("./config/up", "../bin/app")
            .hardlink("./bin/app-copy", "./bin/app")
            .file("./empty", 0o100666, b"")
    }

    fn file_entry(path: &str, mode: u32, data: &[u8]) -> Entry {
        Entry {
            path: path.to_string(),
            kind: EntryKind::File {
                sha256: sha256_hex(data),
            },
            mode,
            size: data.len() as u64,
        }
    }

    fn other_entry(path: &str, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            size: 0,
        }
    }

    fn sample_manifest() -> Manifest {
        Manifest {
            entries: vec![
                other_entry("bin", EntryKind::Directory, 0o755),
                file_entry("bin/app", 0o755, b"#!/bin/sh\necho hi\n"),
                other_entry(
                    "bin/app-copy",
                    EntryKind::Hardlink {
                        target: "bin/app".to_string(),
                    },
                    // Archived as 0777, like the symlinks; only symlinks keep `o+w`.
                    0o775,
                ),
                other_entry(
                    "bin/current",
                    EntryKind::Symlink {
                        target: "app".to_string(),
                    },
                    0o777,
                ),
                other_entry("config", EntryKind::Directory, 0o750),
                file_entry("config/app.env", 0o640, b"PORT=8080\n"),
                other_entry(
                    "config/up",
                    EntryKind::Symlink {
                        target: "../bin/app".to_string(),
                    },
                    0o777,
                ),
                // World-writable in the archive; recorded as the host holds it.
                file_entry("empty", 0o664, b""),
            ],
        }
    }

    // --- valid archives -------------------------------------------------------------------

    #[test]
    fn valid_archive_gives_digest_sizes_and_manifest() {
        let bytes = sample().gz();
        let artifact = inspect_bytes(&bytes).unwrap();
        assert_eq!(artifact.path, Path::new(NAME));
        assert_eq!(artifact.sha256, sha256_hex(&bytes));
        assert_eq!(artifact.size, bytes.len() as u64);
        assert_eq!(artifact.unpacked_size, 18 + 10);
        assert_eq!(artifact.manifest, sample_manifest());
    }

    #[test]
    fn inspect_reads_a_file_from_disk() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("app.tar.gz");
        let bytes = sample().gz();
        std::fs::write(&path, &bytes).unwrap();
        let artifact = inspect_with(&path, &MemberPolicy::default()).unwrap();
        assert_eq!(artifact.path, path);
        assert_eq!(artifact.sha256, sha256_hex(&bytes));
        assert_eq!(artifact.manifest, sample_manifest());
    }

    #[test]
    fn missing_file_is_an_open_error_naming_the_path() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("missing.tar.gz");
        let error = inspect_with(&path, &MemberPolicy::default()).unwrap_err();
        assert!(matches!(error, ArtifactError::Open { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.tar.gz"), "{error}");
    }

    #[test]
    fn large_file_streams_through_small_buffers() {
        // Larger than several buffers, incompressible, with a long (GNU long-name) path.
        let mut data = vec![0u8; 3 * BUFFER_SIZE + 123];
        let mut state: u32 = 1;
        for byte in &mut data {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *byte = (state >> 16) as u8;
        }
        let long_name = format!("{}/file.bin", "deep".repeat(40));
        let mut builder = Builder::new(Vec::new());
        let mut header = Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        builder
            .append_data(&mut header, &long_name, &data[..])
            .unwrap();
        let bytes = gzip(&builder.into_inner().unwrap());
        let artifact = inspect_bytes(&bytes).unwrap();
        assert_eq!(artifact.sha256, sha256_hex(&bytes));
        assert_eq!(artifact.unpacked_size, data.len() as u64);
        assert_eq!(
            artifact.manifest.entries,
            vec![file_entry(&long_name, 0o600, &data)]
        );
    }

    #[test]
    fn names_are_normalized_and_root_is_skipped() {
        let bytes = Tarball::new()
            .directory(".", 0o755)
            .directory("a//b/./", 0o700)
            .file("././a/b//c", 0o644, b"x")
            .gz();
        let artifact = inspect_bytes(&bytes).unwrap();
        let paths: Vec<&str> = artifact
            .manifest
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        assert_eq!(paths, ["a/b", "a/b/c"]);
    }

    #[test]
    fn zero_padding_is_accepted_and_hashed() {
        // Tar record padding inside the gzip stream.
        let mut tar = sample().tar();
        tar.resize(tar.len() + 10 * 1024, 0);
        let bytes = gzip(&tar);
        assert_eq!(inspect_bytes(&bytes).unwrap().manifest, sample_manifest());

        // Zero bytes after the gzip stream (block padding), as `gzip -d` accepts.
        let mut padded = sample().gz();
        padded.resize(padded.len() + 4096, 0);
        let artifact = inspect_bytes(&padded).unwrap();
        assert_eq!(artifact.sha256, sha256_hex(&padded));
        assert_eq!(artifact.size, padded.len() as u64);
    }

    #[test]
    fn concatenated_gzip_members_form_one_stream() {
        let tar = sample().tar();
        let (head, tail) = tar.split_at(700);
        let mut bytes = gzip(head);
        bytes.extend(gzip(tail));
        let artifact = inspect_bytes(&bytes).unwrap();
        assert_eq!(artifact.manifest, sample_manifest());
        assert_eq!(artifact.sha256, sha256_hex(&bytes));
    }

    #[test]
    fn git_archive_style_global_header_is_skipped() {
        let bytes = Tarball::new()
            .global_pax(&[("comment", "0123456789abcdef0123456789abcdef01234567")])
            .file("a", 0o644, b"a")
            .gz();
        let artifact = inspect_bytes(&bytes).unwrap();
        assert_eq!(
            artifact.manifest.entries,
            vec![file_entry("a", 0o644, b"a")]
        );
    }

    // --- stream problems --------------------------------------------------------------------

    #[test]
    fn truncated_gzip_is_an_error_at_every_cut() {
        let bytes = sample().gz();
        for cut in 1..bytes.len() {
            let result = inspect_bytes(&bytes[..cut]);
            assert!(
                matches!(result, Err(ArtifactError::Corrupt { .. })),
                "cut at {cut} of {}: {result:?}",
                bytes.len()
            );
        }
    }

    #[test]
    fn truncated_tar_inside_valid_gzip_names_the_member() {
        let tar = Tarball::new().file("big", 0o644, &[7u8; 2000]).tar();
        let bytes = gzip(&tar[..512 + 1000]);
        let message = assert_corrupt(&bytes);
        assert!(message.contains("big"), "{message}");
        assert!(message.starts_with(NAME), "{message}");
    }

    #[test]
    fn not_gzip_is_refused() {
        let plain_tar = sample().tar();
        for bytes in [&plain_tar[..], b"hello world", b"\x1f", b""] {
            let result = inspect_bytes(bytes);
            match (bytes.len(), result) {
                // A lone first magic byte gets as far as the gzip header parser.
                (1, Err(ArtifactError::Corrupt { .. })) => {}
                (_, Err(error @ ArtifactError::NotGzip { .. })) => {
                    assert!(error.to_string().starts_with(NAME), "{error}");
                }
                (_, other) => panic!("expected NotGzip, got {other:?}"),
            }
        }
    }

    #[test]
    fn trailing_garbage_after_gzip_is_refused() {
        let mut bytes = sample().gz();
        bytes.extend_from_slice(b"garbage");
        let message = assert_corrupt(&bytes);
        assert!(
            message.contains("after the end of the gzip stream"),
            "{message}"
        );

        let mut after_zeros = sample().gz();
        after_zeros.extend_from_slice(&[0, 0, 0, 1]);
        assert_corrupt(&after_zeros);

        let mut bad_member = sample().gz();
        bad_member.extend_from_slice(&[0x1f, 0x00, 0x00]);
        assert_corrupt(&bad_member);
    }

    #[test]
    fn data_after_tar_end_marker_is_refused() {
        let mut tar = sample().tar();
        tar.extend_from_slice(&Tarball::new().file("hidden", 0o644, b"x").tar());
        let message = assert_corrupt(&gzip(&tar));
        assert!(message.contains("end-of-archive"), "{message}");
    }

    #[test]
    fn corrupted_gzip_checksum_is_refused() {
        let mut bytes = sample().gz();
        let crc_position = bytes.len() - 8;
        bytes[crc_position] ^= 0xff;
        assert_corrupt(&bytes);
    }

    #[test]
    fn empty_archives_are_refused() {
        let empty = Tarball::new().gz();
        assert!(matches!(
            inspect_bytes(&empty),
            Err(ArtifactError::Empty { .. })
        ));
        let only_root = Tarball::new().directory("./", 0o755).gz();
        let error = inspect_bytes(&only_root).unwrap_err();
        assert!(matches!(error, ArtifactError::Empty { .. }), "{error:?}");
        assert_eq!(error.to_string(), format!("{NAME}: archive has no entries"));
        let nothing = gzip(b"");
        assert!(matches!(
            inspect_bytes(&nothing),
            Err(ArtifactError::Empty { .. })
        ));
    }

    #[test]
    fn source_read_errors_are_reported_as_read_errors() {
        struct Failing {
            data: Vec<u8>,
            position: usize,
        }
        impl Read for Failing {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                if self.position >= self.data.len() {
                    return Err(io::Error::other("disk on fire"));
                }
                let count = buffer.len().min(self.data.len() - self.position).min(100);
                buffer[..count].copy_from_slice(&self.data[self.position..self.position + count]);
                self.position += count;
                Ok(count)
            }
        }
        let mut data = sample().gz();
        data.truncate(data.len() / 2);
        let error = inspect_reader_with(
            Failing { data, position: 0 },
            Path::new(NAME),
            &MemberPolicy::default(),
        )
        .unwrap_err();
        assert!(matches!(error, ArtifactError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("disk on fire"), "{error}");

        let at_start = Failing {
            data: Vec::new(),
            position: 0,
        };
        let error =
            inspect_reader_with(at_start, Path::new(NAME), &MemberPolicy::default()).unwrap_err();
        assert!(matches!(error, ArtifactError::Read { .. }), "{error:?}");
    }

    // --- member rules -----------------------------------------------------------------------

    #[test]
    fn error_message_names_artifact_and_member() {
        let bytes = Tarball::new().file("../etc/passwd", 0o644, b"x").gz();
        let error = inspect_bytes(&bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            "dist/app.tar.gz: member `../etc/passwd`: path leaves the release directory"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let cases: [(&[u8], &str, &str); 8] = [
            (b"/etc/passwd", "/etc/passwd", "absolute path"),
            (b"a/../../x", "a/../../x", "leaves the release"),
            (b"a/..", "a/..", "leaves the release"),
            (b"..", "..", "leaves the release"),
            (b"", "", "empty name"),
            (b"bad\nname", "bad\nname", "control characters"),
            (b"bad\tname", "bad\tname", "control characters"),
            (b"caf\xe9", "caf\u{fffd}", "not valid UTF-8"),
        ];
        for (raw, member, reason) in cases {
            let bytes = Tarball::new().raw_file(raw, b"x").gz();
            assert_member_error(&bytes, member, reason);
        }
    }

    #[test]
    fn control_characters_are_escaped_in_messages() {
        let bytes = Tarball::new().raw_file(b"evil\n\x1b[31m", b"x").gz();
        let message = inspect_bytes(&bytes).unwrap_err().to_string();
        assert!(
            !message.contains('\n') && !message.contains('\x1b'),
            "{message:?}"
        );
        assert!(message.contains("evil\\n"), "{message}");
    }

    #[test]
    fn special_files_are_refused() {
        for (entry_type, reason) in [
            (EntryType::Char, "device files are not allowed"),
            (EntryType::Block, "device files are not allowed"),
            (EntryType::Fifo, "fifos are not allowed"),
            (EntryType::GNUSparse, "sparse files are not allowed"),
            (EntryType::new(b'V'), "not allowed"),
        ] {
            let bytes = Tarball::new()
                .file("ok", 0o644, b"x")
                .special("dev/thing", entry_type)
                .gz();
            assert_member_error(&bytes, "dev/thing", reason);
        }
    }

    #[test]
    fn symlinks_must_stay_inside_the_release() {
        let inside = Tarball::new()
            .directory("a", 0o755)
            .symlink("a/b", "../c")
            .symlink("a/root", "..")
            .symlink("a/dot", "./x/y")
            .gz();
        let artifact = inspect_bytes(&inside).unwrap();
        assert_eq!(artifact.manifest.entries.len(), 4);

        for (target, reason) in [
            ("../../x", "symlink points outside the release"),
            ("/etc/passwd", "symlink points outside the release"),
            ("x/../../y", "only leading `..`"),
            ("x/..", "only leading `..`"),
        ] {
            let bytes = Tarball::new().symlink("a/b", target).gz();
            assert_member_error(&bytes, "a/b", reason);
        }
        let top = Tarball::new().symlink("up", "..").gz();
        assert_member_error(&top, "up", "symlink points outside the release");
    }

    #[test]
    fn members_may_not_lie_under_symlinks() {
        // `d -> .` then `d/s -> ..` would land outside the release once `d` is followed.
        let through = Tarball::new().symlink("d", ".").symlink("d/s", "..").gz();
        assert_member_error(&through, "d/s", "lies under symlink `d`");

        let over = Tarball::new()
            .file("d/s", 0o644, b"x")
            .symlink("d", ".")
            .gz();
        assert_member_error(&over, "d", "earlier members lie under it");

        let under_file = Tarball::new()
            .file("f", 0o644, b"x")
            .file("f/g", 0o644, b"y")
            .gz();
        assert_member_error(&under_file, "f/g", "parent `f` is not a directory");
    }

    #[test]
    fn hardlinks_must_name_an_earlier_regular_file() {
        let valid = Tarball::new()
            .file("a", 0o644, b"x")
            .hardlink("b", "./a")
            .hardlink("c", "b")
            .gz();
        let manifest = inspect_bytes(&valid).unwrap().manifest;
        assert_eq!(
            manifest.entries[1].kind,
            EntryKind::Hardlink {
                target: "a".to_string()
            }
        );

        let cases = [
            (
                "../etc/passwd",
                "hardlink target: path leaves the release directory",
            ),
            ("/etc/passwd", "hardlink target: absolute path"),
            ("missing", "not an earlier regular file"),
            ("dir", "not an earlier regular file"),
            ("link", "not an earlier regular file"),
            (".", "hardlink target is the release root"),
        ];
        for (target, reason) in cases {
            let bytes = Tarball::new()
                .directory("dir", 0o755)
                .symlink("link", "dir")
                .hardlink("h", target)
                .gz();
            assert_member_error(&bytes, "h", reason);
        }
        let later = Tarball::new()
            .hardlink("h", "a")
            .file("a", 0o644, b"x")
            .gz();
        assert_member_error(&later, "h", "not an earlier regular file");
    }

    #[test]
    fn duplicates_are_refused() {
        let plain = Tarball::new()
            .file("a", 0o644, b"1")
            .file("a", 0o644, b"2")
            .gz();
        assert_member_error(&plain, "a", "duplicate member");
        let normalized = Tarball::new()
            .directory("d/", 0o755)
            .directory("./d", 0o755)
            .gz();
        assert_member_error(&normalized, "./d", "duplicate member");
    }

    #[test]
    fn links_and_directories_may_not_carry_data() {
        let header = raw_header(b"d", EntryType::Directory, 0o755, 3);
        let mut builder = Builder::new(Vec::new());
        builder.append(&header, &b"abc"[..]).unwrap();
        let bytes = gzip(&builder.into_inner().unwrap());
        assert_member_error(&bytes, "d", "carries 3 bytes");

        let root_file = Tarball::new().raw_file(b"./", b"").gz();
        assert_member_error(&root_file, "./", "ends with `/`");
    }

    #[test]
    fn huge_extension_records_are_refused() {
        let comment = "a".repeat(2 * 1024 * 1024);
        let bytes = Tarball::new()
            .pax(&[("comment", comment.as_bytes())])
            .file("a", 0o644, b"a")
            .gz();
        let message = assert_corrupt(&bytes);
        assert!(message.contains("exceeds 1 MiB"), "{message}");

        // The budget is per member: many small members are fine.
        let mut tarball = Tarball::new();
        for index in 0..3000 {
            tarball = tarball.file(&format!("file-{index}"), 0o644, b"0123456789");
        }
        let artifact = inspect_bytes(&tarball.gz()).unwrap();
        assert_eq!(artifact.manifest.entries.len(), 3000);
    }

    #[test]
    fn pax_names_are_checked_like_any_name() {
        let escaping = Tarball::new()
            .pax(&[("path", b"../../outside")])
            .file("innocent", 0o644, b"x")
            .gz();
        assert_member_error(&escaping, "../../outside", "leaves the release");

        // A long path is fine as long as each component fits in 255 bytes.
        let long_path = format!("{}/{}", "x".repeat(200), "y".repeat(200));
        let long_ok = Tarball::new()
            .pax(&[("path", long_path.as_bytes())])
            .file("short", 0o644, b"x")
            .gz();
        let manifest = inspect_bytes(&long_ok).unwrap().manifest;
        assert_eq!(manifest.entries[0].path, long_path);

        let link_escape = Tarball::new()
            .pax(&[("linkpath", b"/etc/shadow")])
            .symlink("s", "fine")
            .gz();
        assert_member_error(&link_escape, "s", "outside the release");

        let sparse = Tarball::new()
            .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")])
            .file("s", 0o644, b"x")
            .gz();
        assert_member_error(&sparse, "s", "sparse files are not allowed");

        let global_path = Tarball::new()
            .global_pax(&[("path", "x")])
            .file("a", 0o644, b"a")
            .gz();
        assert_member_error(&global_path, "pax_global_header", "sets `path`");
    }

    // --- service policy: setuid/setgid ------------------------------------------------------

    const ALLOW_SETID: MemberPolicy = MemberPolicy { allow_setid: true };

    fn inspect_bytes_with(bytes: &[u8], policy: &MemberPolicy) -> Result<Artifact, ArtifactError> {
        inspect_reader_with(bytes, Path::new(NAME), policy)
    }

    #[test]
    fn setid_members_are_refused_by_default_naming_member_and_bit() {
        let cases = [
            (
                Tarball::new().file("bin/su", 0o104755, b"x"),
                "bin/su",
                "setuid bit (04000)",
            ),
            (
                Tarball::new().file("bin/sg", 0o2755, b"x"),
                "bin/sg",
                "setgid bit (02000)",
            ),
            (
                Tarball::new().file("bin/both", 0o6711, b"x"),
                "bin/both",
                "setuid and setgid bits (06000)",
            ),
            (
                Tarball::new().directory("shared/", 0o2775),
                "shared/",
                "setgid bit",
            ),
        ];
        for (tarball, member, reason) in cases {
            let bytes = tarball.gz();
            assert_member_error(&bytes, member, reason);
            assert_member_error(
                &bytes,
                member,
                "unless the service sets `allow_setid = true`",
            );
        }
        let error = inspect_bytes(&Tarball::new().file("bin/su", 0o4755, b"x").gz()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "dist/app.tar.gz: member `bin/su`: mode 4755 has the setuid bit (04000), which is \
             refused unless the service sets `allow_setid = true`"
        );
    }

    #[test]
    fn setid_on_the_release_root_or_a_hardlink_is_refused_too() {
        let root = Tarball::new()
            .directory("./", 0o2755)
            .file("a", 0o644, b"x")
            .gz();
        assert_member_error(&root, "./", "setgid bit (02000)");

        let mut header = raw_header(b"b", EntryType::Link, 0o4755, 0);
        header.as_old_mut().linkname[..1].copy_from_slice(b"a");
        header.set_cksum();
        let mut tarball = Tarball::new().file("a", 0o755, b"x");
        tarball.0.append(&header, &[][..]).unwrap();
        assert_member_error(&tarball.gz(), "b", "setuid bit (04000)");
    }

    #[test]
    fn symlink_modes_are_not_setid() {
        let mut header = raw_header(b"s", EntryType::Symlink, 0o7777, 0);
        header.as_old_mut().linkname[..1].copy_from_slice(b"a");
        header.set_cksum();
        let mut tarball = Tarball::new().file("a", 0o644, b"x");
        tarball.0.append(&header, &[][..]).unwrap();
        let manifest = inspect_bytes(&tarball.gz()).unwrap().manifest;
        assert_eq!(manifest.entries[1].path, "s");
        assert_eq!(
            manifest.entries[1].mode, 0o7777,
            "symlink modes are kept as archived"
        );
    }

    #[test]
    fn setid_members_are_accepted_when_the_service_allows_them() {
        let bytes = Tarball::new()
            .directory("bin/", 0o2755)
            .file("bin/su", 0o4755, b"x")
            .file("bin/both", 0o6777, b"y")
            .gz();
        let manifest = inspect_bytes_with(&bytes, &ALLOW_SETID).unwrap().manifest;
        let modes: Vec<(&str, u32)> = manifest
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.mode))
            .collect();
        // Setid bits are kept; only `o+w` is cleared.
        assert_eq!(
            modes,
            [("bin", 0o2755), ("bin/both", 0o6775), ("bin/su", 0o4755)]
        );
        assert!(MemberPolicy::default() != ALLOW_SETID);
        assert!(!MemberPolicy::default().allow_setid);
    }

    #[test]
    fn inspect_with_reads_a_file_from_disk_under_the_policy() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("app.tar.gz");
        std::fs::write(&path, Tarball::new().file("su", 0o4755, b"x").gz()).unwrap();
        let refused = inspect_with(&path, &MemberPolicy::default()).unwrap_err();
        assert!(refused.to_string().contains("member `su`"), "{refused}");
        assert!(refused.to_string().contains("setuid"), "{refused}");
        let allowed = inspect_with(&path, &ALLOW_SETID).unwrap();
        assert_eq!(allowed.manifest.entries[0].mode, 0o4755);
    }

    // --- name component length -------------------------------------------------------------

    #[test]
    fn name_components_longer_than_255_bytes_are_refused() {
        let longest = "n".repeat(255);
        let accepted = Tarball::new()
            .pax(&[("path", format!("dir/{longest}").as_bytes())])
            .file("short", 0o644, b"x")
            .gz();
        let manifest = inspect_bytes(&accepted).unwrap().manifest;
        assert_eq!(manifest.entries[0].path, format!("dir/{longest}"));

        let too_long = "n".repeat(256);
        // As the last component, in the middle, and counted in bytes (128 × 2-byte `é`).
        for name in [
            too_long.clone(),
            format!("dir/{too_long}"),
            format!("{too_long}/file"),
            "é".repeat(128),
        ] {
            let bytes = Tarball::new()
                .pax(&[("path", name.as_bytes())])
                .file("short", 0o644, b"x")
                .gz();
            assert_member_error(&bytes, &name, "longer than 255 bytes");
            assert_member_error(&bytes, &name, "is 256 bytes");
        }
        // Directories and symlinks are members like any other.
        let directory = Tarball::new()
            .pax(&[("path", too_long.as_bytes())])
            .directory("d", 0o755)
            .gz();
        assert_member_error(&directory, &too_long, "longer than 255 bytes");
        let message = inspect_bytes(&directory).unwrap_err().to_string();
        assert!(message.len() < 2 * too_long.len() + 200, "{message}");
    }

    // --- modes recorded as the host holds them ---------------------------------------------

    #[test]
    fn world_writable_modes_are_recorded_without_o_w_except_symlinks() {
        let bytes = Tarball::new()
            .directory("public/", 0o40777)
            .file("public/drop", 0o100666, b"x")
            .file("public/tool", 0o757, b"y")
            .hardlink("public/drop-link", "public/drop")
            .symlink("public/up", "drop")
            .file("private", 0o600, b"z")
            .gz();
        let manifest = inspect_bytes(&bytes).unwrap().manifest;
        let modes: Vec<(&str, u32)> = manifest
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("private", 0o600),
                ("public", 0o775),
                ("public/drop", 0o664),
                ("public/drop-link", 0o775),
                ("public/tool", 0o755),
                ("public/up", 0o777),
            ]
        );
        // The text form stored on hosts carries the masked modes, and a host that holds exactly
        // that (after `chmod o-w`) shows no drift.
        let text = manifest.to_text();
        assert!(text.contains("d\t0775\t0\t-\tpublic\n"), "{text}");
        assert!(text.contains("\t0664\t1\t"), "{text}");
        let recorded = Manifest::from_text(&text).unwrap();
        // What a host scan finds after `tar --no-same-owner` and `chmod o-w` (hardlinks are
        // plain files there, symlinks read as 0777).
        let host = Manifest {
            entries: vec![
                file_entry("private", 0o600, b"z"),
                other_entry("public", EntryKind::Directory, 0o775),
                file_entry("public/drop", 0o664, b"x"),
                file_entry("public/drop-link", 0o664, b"x"),
                file_entry("public/tool", 0o755, b"y"),
                other_entry(
                    "public/up",
                    EntryKind::Symlink {
                        target: "drop".to_string(),
                    },
                    0o777,
                ),
            ],
        };
        assert_eq!(
            recorded.comparable().diff(&host.comparable()),
            Diff::default()
        );
    }

    // --- manifest text ----------------------------------------------------------------------

    #[test]
    fn manifest_text_round_trips() {
        let manifest = sample_manifest();
        let text = manifest.to_text();
        assert!(
            text.starts_with("deploy-manifest 1\nd\t0755\t0\t-\tbin\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "f\t0755\t18\t{}\tbin/app\n",
            sha256_hex(b"#!/bin/sh\necho hi\n")
        )));
        assert!(text.contains("l\t0777\t0\tapp\tbin/current\n"));
        assert!(text.contains("h\t0775\t0\tbin/app\tbin/app-copy\n"));
        assert!(text.contains("\t0664\t0\t"));
        assert_eq!(Manifest::from_text(&text).unwrap(), manifest);
        assert_eq!(
            Manifest::from_text(text.trim_end_matches('\n')).unwrap(),
            manifest
        );
        let empty = Manifest { entries: vec![] };
        assert_eq!(empty.to_text(), "deploy-manifest 1\n");
        assert_eq!(Manifest::from_text(&empty.to_text()).unwrap(), empty);
    }

    #[test]
    fn manifest_text_from_an_artifact_round_trips() {
        let manifest = inspect_bytes(&sample().gz()).unwrap().manifest;
        assert_eq!(Manifest::from_text(&manifest.to_text()).unwrap(), manifest);
    }

    #[test]
    fn from_text_sorts_entries() {
        let text = "deploy-manifest 1\nd\t0755\t0\t-\tz\nd\t0755\t0\t-\ta\n";
        let manifest = Manifest::from_text(text).unwrap();
        assert_eq!(manifest.entries[0].path, "a");
        assert_eq!(manifest.entries[1].path, "z");
    }

    #[test]
    fn from_text_rejects_hostile_lines_with_line_numbers() {
        let digest = sha256_hex(b"x");
        let good = format!("f\t0644\t1\t{digest}\tok");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "line 1: expected header"),
            ("deploy-manifest 2\n".to_string(), "line 1: expected header"),
            ("\n".to_string(), "line 1"),
            (
                format!("deploy-manifest 1\n{good}\nf\t0644\t1\t{digest}\n"),
                "line 3: expected 5",
            ),
            (
                format!("deploy-manifest 1\n{good}\t\n"),
                "line 2: expected 5",
            ),
            (
                format!("deploy-manifest 1\n{good}\n\n"),
                "line 3: expected 5",
            ),
            (
                format!("deploy-manifest 1\nf\t0999\t1\t{digest}\tp\n"),
                "line 2: bad mode",
            ),
            (
                format!("deploy-manifest 1\nf\t644\t1\t{digest}\tp\n"),
                "line 2: bad mode",
            ),
            (
                format!("deploy-manifest 1\nf\t+644\t1\t{digest}\tp\n"),
                "line 2: bad mode",
            ),
            (
                format!("deploy-manifest 1\nf\t0644\t-1\t{digest}\tp\n"),
                "line 2: bad size",
            ),
            (
                format!("deploy-manifest 1\nf\t0644\t99999999999999999999999\t{digest}\tp\n"),
                "line 2: bad size",
            ),
            (
                "deploy-manifest 1\nf\t0644\t1\tABC\tp\n".to_string(),
                "line 2: expected a sha256",
            ),
            (
                format!(
                    "deploy-manifest 1\nf\t0644\t1\t{}\tp\n",
                    digest.to_uppercase()
                ),
                "line 2: expected a sha256",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\tx\tp\n".to_string(),
                "line 2: expected `-`",
            ),
            (
                "deploy-manifest 1\nd\t0755\t5\t-\tp\n".to_string(),
                "line 2: size must be 0",
            ),
            (
                "deploy-manifest 1\nx\t0755\t0\t-\tp\n".to_string(),
                "line 2: unknown entry kind",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\t/etc\n".to_string(),
                "line 2: path",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\ta/../b\n".to_string(),
                "line 2: path",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\ta/\n".to_string(),
                "line 2: path",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\t\n".to_string(),
                "line 2: path",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\ta\r\n".to_string(),
                "line 2: path",
            ),
            (
                "deploy-manifest 1\nl\t0777\t0\t\tp\n".to_string(),
                "line 2: bad symlink target",
            ),
            (
                "deploy-manifest 1\nh\t0644\t0\t../x\tp\n".to_string(),
                "line 2: hardlink target",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\ta\nd\t0755\t0\t-\ta\n".to_string(),
                "line 3: duplicate path `a` (first on line 2)",
            ),
        ];
        for (text, expected) in cases {
            let error = Manifest::from_text(&text).unwrap_err();
            assert!(
                error.contains(expected),
                "{text:?}: `{error}` lacks `{expected}`"
            );
        }
    }

    #[test]
    fn from_text_never_panics_on_mangled_input() {
        let text = sample_manifest().to_text();
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            if let Ok(prefix) = std::str::from_utf8(&bytes[..cut]) {
                let _ = Manifest::from_text(prefix);
            }
        }
        for position in 0..bytes.len() {
            for replacement in [b'\t', b'\n', b'0', b'9', b'/', b'.', b'\xff', b'x'] {
                let mut mangled = bytes.to_vec();
                mangled[position] = replacement;
                let mangled = String::from_utf8_lossy(&mangled);
                let _ = Manifest::from_text(&mangled);
            }
        }
        let long_field = format!("deploy-manifest 1\nf\t{}\t0\t-\tp\n", "7".repeat(10_000));
        let error = Manifest::from_text(&long_field).unwrap_err();
        assert!(error.len() < 200, "{error}");
    }

    // --- diff and filtering -----------------------------------------------------------------

    #[test]
    fn diff_reports_added_modified_and_removed() {
        let older = sample_manifest();
        assert!(older.diff(&older).is_empty());

        let mut newer = older.clone();
        // content change
        newer.entries[1] = file_entry("bin/app", 0o755, b"new content");
        // mode change
        newer.entries[5].mode = 0o600;
        // link target change
        newer.entries[3].kind = EntryKind::Symlink {
            target: "app-copy".to_string(),
        };
        // kind change: file becomes a directory
        newer.entries[7] = other_entry("empty", EntryKind::Directory, 0o664);
        // removed and added
        newer.entries.retain(|entry| entry.path != "config/up");
        newer
            .entries
            .push(other_entry("logs", EntryKind::Directory, 0o755));
        newer.entries.push(file_entry("a-new", 0o644, b"n"));

        let diff = older.diff(&newer);
        assert_eq!(
            diff,
            Diff {
                added: vec!["a-new".to_string(), "logs".to_string()],
                modified: vec![
                    "bin/app".to_string(),
                    "bin/current".to_string(),
                    "config/app.env".to_string(),
                    "empty".to_string(),
                ],
                removed: vec!["config/up".to_string()],
            }
        );
        assert!(!diff.is_empty());
        let reverse = newer.diff(&older);
        assert_eq!(reverse.added, diff.removed);
        assert_eq!(reverse.removed, diff.added);
        assert!(Diff::default().is_empty());
    }

    #[test]
    fn without_paths_drops_prefixes_and_what_lies_under_them() {
        let manifest = sample_manifest();
        let filtered = manifest.without_paths(&[
            "config/".to_string(),
            "./bin/app".to_string(),
            "".to_string(),
            "em".to_string(),
        ]);
        let paths: Vec<&str> = filtered
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        assert_eq!(paths, ["bin", "bin/app-copy", "bin/current", "empty"]);
        assert_eq!(manifest.without_paths(&[]), manifest);
    }
}

/// Property tests: the member rules hold for arbitrary member names, modes and types.
#[cfg(test)]
mod properties {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use std::io::Write;
    use tar::{Builder, Header};

    /// One archive member, its name and link target carried by a pax record so that any bytes
    /// (long, `..`, absolute, invalid UTF-8) reach the parser.
    #[derive(Debug, Clone)]
    struct Member {
        name: Vec<u8>,
        type_byte: u8,
        mode: u32,
        link: Option<Vec<u8>>,
        data: Vec<u8>,
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_string()),
            Just("..".to_string()),
            "[a-z]{1,8}",
            "[a-z]{254,257}",
            "é{127,129}",
            "\\PC{0,6}",
            ".{0,6}",
        ]
    }

    /// Hostile names: `/`-joined arbitrary components (maybe absolute), or arbitrary bytes.
    fn hostile_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => (any::<bool>(), prop::collection::vec(component(), 1..5)).prop_map(
                |(absolute, components)| {
                    let joined = components.join("/");
                    if absolute { format!("/{joined}") } else { joined }.into_bytes()
                }
            ),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    /// Plausible names from a tiny alphabet, so that members share parents, collide and name
    /// each other; now and then a component at or just over the 255-byte limit.
    fn plausible_name() -> impl Strategy<Value = Vec<u8>> {
        let component = prop_oneof![
            8 => "[ab]{1,2}",
            1 => Just(".".to_string()),
            1 => "[ab]{255,256}",
        ];
        (
            prop::sample::select(vec!["", "./"]),
            prop::collection::vec(component, 1..4),
        )
            .prop_map(|(prefix, components)| {
                format!("{prefix}{}", components.join("/")).into_bytes()
            })
    }

    /// Symlink targets: relative ones that may climb, and hostile ones.
    fn link_target() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => (0..3usize, plausible_name()).prop_map(|(climbs, name)| {
                let mut target = "../".repeat(climbs).into_bytes();
                target.extend(name);
                target
            }),
            1 => hostile_name(),
        ]
    }

    fn member() -> impl Strategy<Value = Member> {
        let type_byte = prop_oneof![
            6 => prop::sample::select(b"05".as_slice()),
            2 => prop::sample::select(b"21".as_slice()),
            1 => prop::sample::select(b"3467SgxLKV".as_slice()),
            1 => any::<u8>(),
        ];
        let name = prop_oneof![3 => plausible_name(), 1 => hostile_name()];
        let mode = prop_oneof![
            8 => 0..=0o777u32,
            2 => 0..=0o7777u32,
            1 => 0..=0o777_7777u32,
        ];
        (
            name,
            type_byte,
            mode,
            link_target(),
            prop::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(name, type_byte, mode, target, data)| {
                let is_link = matches!(type_byte, b'1' | b'2');
                let is_file = matches!(type_byte, b'0' | b'7');
                Member {
                    name,
                    type_byte,
                    mode,
                    link: is_link.then_some(target),
                    data: if is_file { data } else { Vec::new() },
                }
            })
    }

    /// The `.tar.gz` of `members`; `None` when the tar crate itself refuses to write one.
    fn archive(members: &[Member]) -> Option<Vec<u8>> {
        let mut builder = Builder::new(Vec::new());
        for member in members {
            let mut records: Vec<(&str, &[u8])> = vec![("path", &member.name)];
            if let Some(link) = &member.link {
                records.push(("linkpath", link));
            }
            builder.append_pax_extensions(records).ok()?;
            let mut header = Header::new_ustar();
            header.set_entry_type(EntryType::new(member.type_byte));
            header.set_mode(member.mode);
            header.set_size(member.data.len() as u64);
            header.set_cksum();
            builder.append(&header, member.data.as_slice()).ok()?;
        }
        let tar = builder.into_inner().ok()?;
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&tar).ok()?;
        encoder.finish().ok()
    }

    /// What every accepted path must be: relative, normalized, no `..`, short components.
    fn assert_safe_path(path: &str) -> Result<(), TestCaseError> {
        prop_assert!(!path.is_empty());
        prop_assert!(!path.starts_with('/'), "absolute: {path:?}");
        prop_assert!(!has_control(path), "control characters: {path:?}");
        for component in path.split('/') {
            prop_assert!(!component.is_empty(), "empty component in {path:?}");
            prop_assert!(component != "." && component != "..", "{path:?}");
            prop_assert!(component.len() <= NAME_MAX, "long component in {path:?}");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn member_names_normalize_to_safe_paths(
            raw in prop_oneof![plausible_name(), hostile_name(), link_target()],
        ) {
            match normalize_member_name(&raw) {
                Ok(Some(path)) => {
                    assert_safe_path(&path)?;
                    // Normalizing is idempotent.
                    prop_assert_eq!(normalize_member_name(path.as_bytes()), Ok(Some(path.clone())));
                }
                Ok(None) => prop_assert!(raw.iter().all(|byte| *byte == b'.' || *byte == b'/')),
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }

        #[test]
        fn arbitrary_members_never_panic_and_accepted_ones_follow_the_rules(
            members in prop::collection::vec(member(), 1..5),
            allow_setid in any::<bool>(),
        ) {
            let Some(bytes) = archive(&members) else {
                return Ok(());
            };
            let policy = MemberPolicy { allow_setid };
            let Ok(artifact) = inspect_reader_with(bytes.as_slice(), Path::new("a.tar.gz"), &policy)
            else {
                return Ok(());
            };
            for entry in &artifact.manifest.entries {
                assert_safe_path(&entry.path)?;
                let symlink = matches!(entry.kind, EntryKind::Symlink { .. });
                if !symlink {
                    prop_assert_eq!(entry.mode & OTHERS_WRITE, 0, "o+w recorded: {:?}", entry);
                    if !allow_setid {
                        prop_assert_eq!(entry.mode & SETID_BITS, 0, "setid accepted: {:?}", entry);
                    }
                }
                if let EntryKind::Hardlink { target } = &entry.kind {
                    assert_safe_path(target)?;
                }
                if let EntryKind::Symlink { target } = &entry.kind {
                    prop_assert!(!target.starts_with('/'), "absolute symlink: {:?}", entry);
                }
            }
            // The manifest survives its text form.
            let text = artifact.manifest.to_text();
            prop_assert_eq!(Manifest::from_text(&text), Ok(artifact.manifest.clone()));
        }
    }
}
