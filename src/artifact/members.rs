//! The member rules: what a release tarball may contain (names, types, links, modes, pax
//! headers) and how each member is recorded in the manifest.
//!
//! # Modes in the manifest
//!
//! Hosts extract without the archive's owners and then clear the "others may write" bit
//! (`chmod o-w`) of every entry that is not a symlink, so the manifest records each non-symlink
//! mode with `0o002` cleared: what the host holds after a push is what the manifest says, and
//! `status --verify` sees no drift. Setuid/setgid bits are judged on the mode as archived.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};
use tar::EntryType;

use super::error::ArtifactError;
use super::streaming::{HEADER_BUDGET, describe, hex};
use crate::manifest::{Entry, EntryKind, has_control, printable, quote};

/// Longest name component (file or directory name) Linux file systems accept (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// The setuid and setgid permission bits.
const SETID_BITS: u32 = 0o6000;

/// The "others may write" permission bit, cleared on hosts (see the module documentation).
const OTHERS_WRITE: u32 = 0o002;

/// Member rules that depend on the service the artifact is pushed for. The default is the strict
/// policy: setuid/setgid members are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MemberPolicy {
    /// Accept members whose mode has the setuid or setgid bit (`allow_setid = true`).
    pub allow_setid: bool,
    /// `strip_components`: drop this many leading directories of every member name (see
    /// [`release_path`]). `None` (not set in the inventory): a tarball whose members all sit
    /// under one top directory is refused; `Some(0)` takes it as it is.
    pub strip_components: Option<usize>,
}

impl MemberPolicy {
    fn strip(&self) -> usize {
        self.strip_components.unwrap_or(0)
    }
}

/// What the member pass found, beyond the manifest entries.
pub(super) struct Scanned {
    pub(super) entries: Vec<Entry>,
    pub(super) unpacked_size: u64,
    /// How many leading name components the host's `tar --strip-components` drops to land
    /// every member where the manifest says (tar counts a leading `./`, the manifest does not).
    pub(super) tar_strip: usize,
    /// Every member name starts with `./` (built with `tar -C DIR .`).
    pub(super) dot_prefixed: bool,
}

pub(super) enum Failure {
    /// A member broke a rule.
    Rejected(ArtifactError),
    /// Reading or decoding failed; classified by
    /// [`GzipMembers::classify`](super::streaming::GzipMembers::classify).
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

pub(super) fn scan_members<R: Read>(
    archive: &mut tar::Archive<R>,
    name: &Path,
    policy: &MemberPolicy,
    buffer: &mut [u8],
    budget: &Cell<u64>,
) -> Result<Scanned, Failure> {
    let mut entries = Vec::new();
    let mut layout = Layout::default();
    let mut unpacked_size: u64 = 0;
    let strip = policy.strip();
    let mut tar_strip: Option<usize> = None;
    let mut dot_prefixed = true;
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

        dot_prefixed &= raw_name.starts_with(b"./") || raw_name == b".";
        let path = release_path(&raw_name, strip).map_err(reject)?;
        let stripped_away =
            path.is_none() && normalize_member_name(&raw_name).map_err(reject)?.is_some();
        if let Some(count) = path
            .as_ref()
            .and_then(|_| tar_strip_count(&raw_name, strip))
        {
            match tar_strip {
                Some(earlier) if earlier != count => {
                    return Err(reject(format!(
                        "with strip_components = {strip}, tar would strip {count} leading names here but {earlier} \
                         from earlier members (mixed `./` prefixes): rebuild the tarball"
                    )));
                }
                _ => tar_strip = Some(count),
            }
        }
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
                    return Err(reject(if stripped_away {
                        format!("strip_components = {strip} would drop this symlink")
                    } else {
                        "the release root cannot be a symlink".to_string()
                    }));
                };
                check_symlink_target(path, &target).map_err(reject)?;
                Shape::Symlink(target)
            }
            EntryType::Link => {
                let target = link_text(&member).map_err(reject)?;
                let target = release_path(target.as_bytes(), strip)
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
            // The root directory `.` itself, or a top directory `strip_components` drops:
            // allowed, not part of the manifest.
            if matches!(shape, Shape::Directory) && member.size() == 0 {
                continue;
            }
            if stripped_away {
                return Err(reject(format!(
                    "has no more than {strip} leading directories: strip_components = {strip} would drop it"
                )));
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
    Ok(Scanned {
        entries,
        unpacked_size,
        tar_strip: tar_strip.unwrap_or(0),
        dot_prefixed,
    })
}

/// A member's name as it lands in the release: normalized ([`normalize_member_name`]: `./`
/// and empty components are not directories), then its first `strip` components dropped, as
/// `tar --strip-components` does. `Ok(None)`: the release root, or a name of no more than
/// `strip` components. The one place names are mapped, for the inspection (manifest, member
/// rules) and the delta streams alike.
pub(super) fn release_path(raw: &[u8], strip: usize) -> Result<Option<String>, String> {
    let Some(path) = normalize_member_name(raw)? else {
        return Ok(None);
    };
    Ok(path.splitn(strip + 1, '/').nth(strip).map(str::to_string))
}

/// How many components the host's `tar --strip-components` must drop from `raw` to remove its
/// first `strip` directories as [`release_path`] does: tar also counts `.` components. `None`
/// when `strip` is 0 or the name has no more than `strip` components.
fn tar_strip_count(raw: &[u8], strip: usize) -> Option<usize> {
    if strip == 0 {
        return None;
    }
    let mut dropped = 0;
    let mut counted = 0;
    for component in raw
        .split(|byte| *byte == b'/')
        .filter(|part| !part.is_empty())
    {
        if counted == strip {
            return Some(counted + dropped);
        }
        if component == b"." {
            dropped += 1;
        } else {
            counted += 1;
        }
    }
    None
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
pub(super) fn normalize_member_name(raw: &[u8]) -> Result<Option<String>, String> {
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

/// Property tests: the member rules hold for arbitrary member names, modes and types.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::inspection::inspect_reader_with;
    use crate::manifest::Manifest;
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
            strip_components in prop::option::of(0usize..3),
        ) {
            let Some(bytes) = archive(&members) else {
                return Ok(());
            };
            let policy = MemberPolicy { allow_setid, strip_components };
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
            prop_assert_eq!(Manifest::from_text(&text), Ok((*artifact.manifest).clone()));
        }
    }
}
