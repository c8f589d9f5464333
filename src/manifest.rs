//! The manifest of a release: its members ([`Manifest`], [`Entry`], [`EntryKind`]), the text
//! form stored on hosts ([`Manifest::to_text`], [`Manifest::from_text`]), the comparable form
//! ([`Manifest::comparable`], [`Manifest::without_paths`]) and the differences between two
//! manifests ([`Manifest::diff`], [`Diff`]), used by `diff`, `push --diff` and `status --verify`.
//!
//! Manifests are built by `artifact` (from a tarball) and by `facts` (from a host's scan); this
//! module does no I/O. How modes are recorded is explained in `artifact`'s member rules.

use std::collections::BTreeMap;

/// First line of the manifest text format.
const MANIFEST_HEADER: &str = "deploy-manifest 1";

/// Longest excerpt of hostile input quoted back in a manifest parse error.
const QUOTE_LIMIT: usize = 60;

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
    /// unless the entry is a symlink (see `artifact`'s member rules).
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
    /// Entries produced by `artifact::inspect_keeping` never contain tabs, newlines or other control
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
        // Parsed in order up to the first bad line, then sorted by path (a recorded manifest is
        // already sorted, so this is one pass), which puts duplicates side by side: no map, no
        // copy of any path. The error is the one a line-by-line reading meets first.
        let mut numbered: Vec<(usize, Entry)> = Vec::new();
        let mut bad_line = None;
        for (index, line) in lines.enumerate() {
            let number = index + 2;
            match parse_manifest_line(line) {
                Ok(entry) => numbered.push((number, entry)),
                Err(reason) => {
                    bad_line = Some(format!("line {number}: {reason}"));
                    break;
                }
            }
        }
        numbered.sort_by(|(_, left), (_, right)| left.path.cmp(&right.path));
        let duplicate = numbered
            .windows(2)
            .filter(|pair| pair[0].1.path == pair[1].1.path)
            .min_by_key(|pair| pair[1].0);
        if let Some([(first, entry), (number, _)]) = duplicate {
            return Err(format!(
                "line {number}: duplicate path `{}` (first on line {first})",
                quote(&entry.path)
            ));
        }
        if let Some(error) = bad_line {
            return Err(error);
        }
        Ok(Manifest {
            entries: numbered.into_iter().map(|(_, entry)| entry).collect(),
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
    /// Borrowed when nothing changes (no hardlink, every symlink already 0777), as for most
    /// artifacts and every host scan: hosts compare with it once each.
    pub fn comparable(&self) -> std::borrow::Cow<'_, Manifest> {
        let unchanged = self.entries.iter().all(|entry| match entry.kind {
            EntryKind::Hardlink { .. } => false,
            EntryKind::Symlink { .. } => entry.mode == 0o777,
            EntryKind::File { .. } | EntryKind::Directory => true,
        });
        if unchanged {
            return std::borrow::Cow::Borrowed(self);
        }
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
        std::borrow::Cow::Owned(Manifest { entries })
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

/// What a delta push reuses from a base release ([`Manifest::reuse_from`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reuse {
    /// Regular files taken from the base release (same path, type, mode and sha256), sorted.
    pub reused: Vec<String>,
    /// Bytes of the reused files.
    pub reused_bytes: u64,
    /// Regular files and hardlinks that must be sent.
    pub sent_files: usize,
    /// Bytes of the files that must be sent.
    pub sent_bytes: u64,
}

impl Manifest {
    /// The regular files of `self` (an artifact's manifest) that a host can take from a base
    /// release whose recorded manifest is `base`: same path, type, mode and sha256. Never
    /// reused: anything at or under `always_sent` (the shared paths, which the release links
    /// away anyway), hardlinks, and the files hardlinks point at (the stream carries them
    /// together so that the link can be made).
    pub fn reuse_from(&self, base: &Manifest, always_sent: &[String]) -> Reuse {
        let base = base.comparable();
        let base_files: BTreeMap<&str, &Entry> = base
            .entries
            .iter()
            .filter(|entry| matches!(entry.kind, EntryKind::File { .. }))
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let link_targets: std::collections::BTreeSet<&str> = self
            .entries
            .iter()
            .filter_map(|entry| match &entry.kind {
                EntryKind::Hardlink { target } => Some(target.as_str()),
                _ => None,
            })
            .collect();
        let mut reuse = Reuse::default();
        for entry in &self.entries {
            match &entry.kind {
                EntryKind::File { .. } => {
                    let reusable = !link_targets.contains(entry.path.as_str())
                        && !always_sent
                            .iter()
                            .any(|prefix| is_same_or_under(&entry.path, prefix))
                        && base_files
                            .get(entry.path.as_str())
                            .is_some_and(|old| old.kind == entry.kind && old.mode == entry.mode);
                    if reusable {
                        reuse.reused.push(entry.path.clone());
                        reuse.reused_bytes += entry.size;
                    } else {
                        reuse.sent_files += 1;
                        reuse.sent_bytes += entry.size;
                    }
                }
                EntryKind::Hardlink { .. } => reuse.sent_files += 1,
                EntryKind::Directory | EntryKind::Symlink { .. } => {}
            }
        }
        reuse
    }

    /// The paths where a staged tree (`scanned`, from a host) differs from `self` (the
    /// artifact's manifest) and must be sent again: missing, or of another kind, mode, content
    /// or link target. Directories the tree holds beyond the manifest are ancestors tar made
    /// for members without their own directory entry, as a full extraction makes them, and do
    /// not count. `Err` names an entry that sending cannot repair (a file the manifest does not
    /// know).
    pub fn staged_differences(&self, scanned: &Manifest) -> Result<Vec<String>, String> {
        let expected = self.comparable();
        let diff = expected.diff(&scanned.comparable());
        let kinds: BTreeMap<&str, &EntryKind> = scanned
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), &entry.kind))
            .collect();
        if let Some(extra) = diff
            .added
            .iter()
            .find(|path| !matches!(kinds.get(path.as_str()), Some(EntryKind::Directory)))
        {
            return Err(format!(
                "the staged tree holds `{}`, which the artifact does not",
                quote(extra)
            ));
        }
        let mut differences = diff.modified;
        differences.extend(diff.removed);
        differences.sort();
        Ok(differences)
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
    let mut fields = line.split('\t');
    let (Some(code), Some(mode), Some(size), Some(detail), Some(path), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(format!(
            "expected 5 tab-separated fields, found {} in `{}`",
            line.split('\t').count(),
            quote(line)
        ));
    };
    let mode = parse_mode(mode)?;
    let size = parse_size(size)?;
    check_manifest_path(path).map_err(|reason| format!("path `{}`: {reason}", quote(path)))?;
    let kind = match code {
        "f" => {
            if Sha256::parse(detail).is_err() {
                return Err(format!(
                    "expected a sha256 (64 lowercase hex digits), found `{}`",
                    quote(detail)
                ));
            }
            EntryKind::File {
                sha256: detail.to_string(),
            }
        }
        "d" => {
            if detail != "-" {
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
                target: detail.to_string(),
            }
        }
        "h" => {
            check_manifest_path(detail)
                .map_err(|reason| format!("hardlink target `{}`: {reason}", quote(detail)))?;
            EntryKind::Hardlink {
                target: detail.to_string(),
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
        path: path.to_string(),
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

// ---------------------------------------------------------------------------------------------
// Digests
// ---------------------------------------------------------------------------------------------

/// A sha256 digest as text: exactly 64 lowercase hex digits, checked once by [`Sha256::parse`]
/// wherever a digest enters the program (the artifact's hash, the inventory, a host's digest
/// file, the download cache, a manifest line). Safe as it is in a file name or a shell word.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(String);

impl Sha256 {
    /// Checks `text`: 64 lowercase hex digits and nothing else. Callers that accept upper case
    /// (the inventory, a host's digest file, the download cache) lower-case it first.
    pub fn parse(text: &str) -> Result<Sha256, String> {
        let hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
        if text.len() == 64 && text.bytes().all(hex) {
            Ok(Sha256(text.to_string()))
        } else {
            Err(format!(
                "`{}` is not a sha256 (64 lowercase hex digits)",
                quote(text)
            ))
        }
    }
}

impl std::ops::Deref for Sha256 {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl PartialEq<String> for Sha256 {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

// ---------------------------------------------------------------------------------------------
// Text for messages (also used by `artifact`)
// ---------------------------------------------------------------------------------------------

pub(crate) fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// `text` with control characters escaped, for error messages.
pub(crate) fn printable(text: &str) -> String {
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
pub(crate) fn quote(text: &str) -> String {
    let mut excerpt: String = text.chars().take(QUOTE_LIMIT).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    printable(&excerpt)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Lowercase hex sha256 of `bytes`.
    pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    pub(crate) fn file_entry(path: &str, mode: u32, data: &[u8]) -> Entry {
        Entry {
            path: path.to_string(),
            kind: EntryKind::File {
                sha256: sha256_hex(data),
            },
            mode,
            size: data.len() as u64,
        }
    }

    pub(crate) fn other_entry(path: &str, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            size: 0,
        }
    }

    /// The manifest of the artifact tests' `sample()` tarball, as inspection records it.
    pub(crate) fn sample_manifest() -> Manifest {
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
    fn from_text_sorts_entries() {
        let text = "deploy-manifest 1\nd\t0755\t0\t-\tz\nd\t0755\t0\t-\ta\n";
        let manifest = Manifest::from_text(text).unwrap();
        assert_eq!(manifest.entries[0].path, "a");
        assert_eq!(manifest.entries[1].path, "z");
    }

    #[test]
    fn comparable_borrows_only_what_needs_no_change() {
        let link = |target: &str| EntryKind::Symlink {
            target: target.to_string(),
        };
        let plain = Manifest {
            entries: vec![
                other_entry("d", EntryKind::Directory, 0o755),
                file_entry("d/f", 0o644, b"f"),
                other_entry("d/l", link("f"), 0o777),
            ],
        };
        assert!(matches!(plain.comparable(), std::borrow::Cow::Borrowed(_)));
        let mut odd_symlink = plain.clone();
        odd_symlink.entries[2].mode = 0o755;
        let comparable = odd_symlink.comparable();
        assert!(matches!(comparable, std::borrow::Cow::Owned(_)));
        assert_eq!(*comparable, plain);
        let mut with_hardlink = plain.clone();
        with_hardlink.entries.push(other_entry(
            "d/h",
            EntryKind::Hardlink {
                target: "d/f".to_string(),
            },
            0o644,
        ));
        let comparable = with_hardlink.comparable();
        assert!(matches!(comparable, std::borrow::Cow::Owned(_)));
        assert_eq!(comparable.entries[3].kind, plain.entries[1].kind);
        assert_eq!(comparable.entries[3].size, 1);
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
            // The error a line-by-line reading meets first: the earliest repeated line (paths
            // out of order, three times the same), or a bad line before any repetition.
            (
                "deploy-manifest 1\nd\t0755\t0\t-\tz\nd\t0755\t0\t-\ta\nd\t0755\t0\t-\tz\nd\t0755\t0\t-\ta\nd\t0755\t0\t-\tz\n"
                    .to_string(),
                "line 4: duplicate path `z` (first on line 2)",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\ta\nd\t0755\t0\t-\ta\nx\n".to_string(),
                "line 3: duplicate path `a` (first on line 2)",
            ),
            (
                "deploy-manifest 1\nd\t0755\t0\t-\ta\nx\nd\t0755\t0\t-\ta\n".to_string(),
                "line 3: expected 5 tab-separated fields, found 1",
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

    #[test]
    fn reuse_takes_unchanged_files_only_and_differences_name_what_to_send_again() {
        let base = Manifest {
            entries: vec![
                other_entry("bin", EntryKind::Directory, 0o755),
                file_entry("bin/app", 0o755, b"app"),
                file_entry("bin/tool", 0o755, b"tool"),
                file_entry("log/keep", 0o644, b"x"),
                file_entry("mode", 0o644, b"m"),
                file_entry("same", 0o644, b"s"),
            ],
        };
        let artifact = Manifest {
            entries: vec![
                other_entry("bin", EntryKind::Directory, 0o755),
                file_entry("bin/app", 0o755, b"app v2"),
                file_entry("bin/tool", 0o755, b"tool"),
                other_entry(
                    "bin/tool-copy",
                    EntryKind::Hardlink {
                        target: "bin/tool".to_string(),
                    },
                    0o755,
                ),
                file_entry("log/keep", 0o644, b"x"),
                file_entry("mode", 0o600, b"m"),
                file_entry("new", 0o644, b"n"),
                file_entry("same", 0o644, b"s"),
            ],
        };
        let reuse = artifact.reuse_from(&base, &["log".to_string()]);
        // bin/tool is a hardlink's target, log/ is shared, mode and bin/app changed.
        assert_eq!(reuse.reused, ["same"]);
        assert_eq!(reuse.reused_bytes, 1);
        assert_eq!(reuse.sent_files, 6);
        assert_eq!(reuse.sent_bytes, 6 + 4 + 1 + 1 + 1);

        let mut scanned = artifact.comparable().into_owned();
        assert_eq!(artifact.staged_differences(&scanned), Ok(Vec::new()));
        // Implicit directories tar made are fine; an edited, a missing and a re-moded file are
        // sent again; a file the artifact does not have cannot be repaired by sending.
        scanned
            .entries
            .push(other_entry("implicit", EntryKind::Directory, 0o755));
        scanned.entries.retain(|entry| entry.path != "new");
        for entry in &mut scanned.entries {
            match entry.path.as_str() {
                "same" => {
                    entry.kind = EntryKind::File {
                        sha256: sha256_hex(b"edited"),
                    }
                }
                "mode" => entry.mode = 0o644,
                _ => {}
            }
        }
        scanned
            .entries
            .sort_by(|left, right| left.path.cmp(&right.path));
        assert_eq!(
            artifact.staged_differences(&scanned),
            Ok(vec![
                "mode".to_string(),
                "new".to_string(),
                "same".to_string()
            ])
        );
        scanned.entries.push(file_entry("stray", 0o644, b"?"));
        assert!(artifact.staged_differences(&scanned).is_err());
    }
}
