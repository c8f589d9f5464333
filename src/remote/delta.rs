//! Delta: the programs of a delta push on the host (`Step::Delta`, `Step::Verify`,
//! `Step::Repair`).
//!
//! - `receive_delta` extracts the controller's stream into `.deploy/staging/<run>/`: a `reuse`
//!   member first (the NUL-separated paths of the files the host already holds), the
//!   artifact's manifest (`manifest`, which `Finalize` records), then the members sent, under
//!   `tree/`; then it hard-links (or copies) each reused file from the
//!   base release into the staged tree with one `cp` per batch (`xargs`), never one process
//!   per file. A file that cannot be linked is left missing: verification finds it. Before
//!   linking it prints the base release's identity record and the identities of its files as
//!   they are now (`parse_delta_output`).
//! - `scan_staged` records the identities of the staged tree (`$s/identities`, which Finalize
//!   keeps as the release's record) and prints them, then hashes the files named on stdin (the
//!   output is parsed by `parse_verify`); the controller compares the result with the
//!   artifact's manifest, and nothing names the tree a release before that comparison found
//!   nothing to send again.
//!
//! Identities (see ARCHITECTURE.md, "Reused files without hashing them"): a reused file is
//! taken as verified without hashing it only when [`trusted_reuse`] holds: the base release's
//! record says the file (device, inode, size, mtime, ctime) was verified with a ctime older
//! than the record's own stamp, the file is still exactly that before it is linked, and the
//! staged link is still the same inode, size and mtime at verification. Everything else is
//! hashed on the host.
//! - `repair` extracts a stream of the members that differed over what is staged: tar removes
//!   an existing file before writing it, so a hard link to the base release is replaced, never
//!   written through (the base release is never changed).
//!
//! Run inside `<base_dir>` under the run's lock, like every step.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::layout;
use super::scan::{SCAN_DIGEST_LINES, SCAN_DIGESTS, parse_digests};
use super::script::{Script, quote, script};
use super::step::ReuseMode;
use super::steps::{Lowering, prepare};
use crate::artifact::{Entry, EntryKind, Manifest};
use crate::inventory::Version;

/// Name of the stream member that lists the reused files (NUL-separated), beside `tree/`.
pub const REUSE_MEMBER: &str = "reuse";
/// Name of the stream member that holds the artifact's manifest text (recorded by Finalize).
pub const MANIFEST_MEMBER: &str = "manifest";
/// Directory of the stream (and of staging) that holds the release's members.
pub const TREE_MEMBER: &str = "tree";

/// Marks the base release's identity record in a delta step's output.
const RECORD_MARKER: &str = "deploy-record";
/// Marks the identities of the base release's files, as they are before linking.
const BASE_MARKER: &str = "deploy-base";

/// `find` format of an identity listing: type, mode, size, device, inode, mtime, ctime, then
/// the path (relative to the starting point) and the link target, NUL-separated.
const IDENTITY_FORMAT: &str = "%y %m %s %D %i %T@ %C@\\0%P\\0%l\\0";

/// Writes `$s/identities`: a stamp (the ctime of a file made just before), then the identity
/// listing of `$s/tree` (one `find`; `$s` holds no pattern character: it is a run's staging
/// directory, or `s` in tests). The caller removes `$s/stamp` with its other leftovers. Needs GNU find (`deploy check` reports it): when `required` (a delta's
/// verification) its failure fails the step; otherwise (a full push) the release just gets no
/// record, and a later delta from it hashes every file.
pub(super) fn record_identities(required: bool) -> Script {
    script!(
        ": > \"$s/stamp\" && find \"$s/stamp\" \"$s/{tree}\" -path \"$s/stamp\" -printf 'stamp %C@\\0' -o -printf '{format}' > \"$s/identities\" {failed}\n",
        tree = TREE_MEMBER,
        format = IDENTITY_FORMAT,
        failed = if required {
            script!("|| exit 1")
        } else {
            script!("2>/dev/null || rm -f -- \"$s/identities\"")
        },
    )
}

/// `tar -x` of the stream into `$s`, gzip-compressed or not.
fn extract(compress: bool) -> Script {
    if compress {
        script!("tar -xzpf - --no-same-owner -C \"$s\" >&2")
    } else {
        script!("tar -xpf - --no-same-owner -C \"$s\" >&2")
    }
}

impl Lowering<'_> {
    /// Receives a delta stream into staging and links (or copies) the reused files from `base`.
    pub(super) fn receive_delta(
        &self,
        version: &Version,
        base: &Version,
        reuse: ReuseMode,
        compress: bool,
    ) -> Script {
        script!(
            "set -u\numask 022\n{enter}{prepare}s={staging}\nbase={base_release}\n\
             rm -rf -- \"$s\" && mkdir -p -- \"$s/{tree}\" || exit 1\n\
             [ -d \"$base\" ] || {{ echo 'the base release {base} is no longer on this host' >&2; exit 1; }}\n\
             {extract} || {{ echo 'extracting the delta of {version} failed' >&2; exit 1; }}\n\
             [ -f \"$s/{reuse}\" ] || {{ echo 'the delta stream ended without its list of reused files' >&2; exit 1; }}\n\
             find \"$s/{tree}\" ! -type l -perm -0002 -exec chmod o-w {{}} + || exit 1\n\
             t=$(cd -- \"$s/{tree}\" && pwd -P) || exit 1\n\
             printf '{record_marker}\\0'\n\
             cat -- {record} 2>/dev/null || true\n\
             printf '{base_marker}\\0'\n\
             find \"$base\" -type f -printf '{format}' || exit 1\n\
             ( cd -- \"$base\" && xargs -0 -r cp {copy} --parents -t \"$t\" -- < \"$t/../{reuse}\" ) 2>/dev/null || true\n\
             rm -f -- \"$s/{reuse}\"\n",
            enter = self.enter(),
            prepare = prepare(),
            staging = quote(&layout::staging(self.run_id)),
            base_release = quote(&layout::release(base)),
            record = quote(&layout::identities(base)),
            record_marker = RECORD_MARKER,
            base_marker = BASE_MARKER,
            format = IDENTITY_FORMAT,
            base = base,
            version = version,
            tree = TREE_MEMBER,
            reuse = REUSE_MEMBER,
            extract = extract(compress),
            copy = match reuse {
                ReuseMode::Hardlink => "-l",
                ReuseMode::Copy => "-p",
            },
        )
    }

    /// Records and prints the identities of the staged tree, then hashes the files named on
    /// stdin (NUL-separated `./path`s, kept in `$s/hash` first, so that nothing is started to
    /// hash none; output: [`parse_verify`]).
    pub(super) fn scan_staged(&self) -> Script {
        script!(
            "set -u\n{enter}s={staging}\n\
             [ -d \"$s/{tree}\" ] || {{ echo 'the staged release is missing' >&2; exit 1; }}\n\
             cat > \"$s/hash\" || exit 1\n\
             {record}cat -- \"$s/identities\" || exit 1\n\
             cd -- \"$s/{tree}\" || exit 1\n\
             if [ ! -s ../hash ]; then\n\
             \x20 printf '{lines}\\0'\n\
             elif command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then\n\
             \x20 printf '{lines}\\0'\n\
             \x20 xargs -0 -r openssl dgst -sha256 -r < ../hash || exit 1\n\
             else\n\
             \x20 printf '{records}\\0'\n\
             \x20 xargs -0 -r sha256sum -z -- < ../hash || exit 1\n\
             fi\n\
             rm -f -- ../hash ../stamp\n",
            enter = self.enter(),
            staging = quote(&layout::staging(self.run_id)),
            tree = TREE_MEMBER,
            record = record_identities(true),
            lines = SCAN_DIGEST_LINES,
            records = SCAN_DIGESTS,
        )
    }

    /// Extracts members sent again over the staged tree.
    pub(super) fn repair(&self, version: &Version, compress: bool) -> Script {
        script!(
            "set -u\numask 022\n{enter}s={staging}\n\
             [ -d \"$s/{tree}\" ] || {{ echo 'the staged release is missing' >&2; exit 1; }}\n\
             {extract} || {{ echo 'extracting the repaired files of {version} failed' >&2; exit 1; }}\n\
             rm -f -- \"$s/{reuse}\"\n\
             find \"$s/{tree}\" ! -type l -perm -0002 -exec chmod o-w {{}} + || exit 1\n",
            enter = self.enter(),
            staging = quote(&layout::staging(self.run_id)),
            tree = TREE_MEMBER,
            reuse = REUSE_MEMBER,
            extract = extract(compress),
            version = version,
        )
    }
}

/// A time as `find` prints `%T@`/`%C@`: seconds and nanoseconds, exact (`None`: a time it
/// could not read, a negative one included, which never counts as unchanged).
pub type Moment = Option<(u64, u32)>;

/// What `find` printed about one entry: its type (`f`, `d`, `l`...), mode, link target, and
/// the fields that change when its content could have: device, inode, size, mtime, ctime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: char,
    pub mode: u32,
    pub link: String,
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified: Moment,
    pub changed: Moment,
}

impl Identity {
    /// Same file, same content as far as the file's own metadata can tell, ignoring its ctime
    /// (which linking it changes).
    fn same_file(&self, other: &Identity) -> bool {
        self.kind == 'f'
            && other.kind == 'f'
            && self.modified.is_some()
            && (self.device, self.inode, self.size, self.modified)
                == (other.device, other.inode, other.size, other.modified)
    }
}

/// An identity listing: entries by path (relative, without `./`), and the stamp of a record
/// (the ctime of a file made just before the listing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    pub stamp: Moment,
    pub entries: BTreeMap<String, Identity>,
}

/// Reads a time as `find` prints `%T@`/`%C@` (`SECONDS.FRACTION`); `None` for anything else.
fn moment(text: &str) -> Moment {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    if seconds.is_empty() || !seconds.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    // Truncated to nanoseconds: `a < b` on truncated values still implies it on the real ones.
    // (No allocation: thousands of these are read per host.)
    let mut digits = fraction.bytes();
    let mut nanos = 0u32;
    for _ in 0..9 {
        nanos = nanos * 10 + digits.next().map_or(0, |digit| u32::from(digit - b'0'));
    }
    Some((seconds.parse().ok()?, nanos))
}

/// Parses identity records from `fields` (NUL-separated: meta, path, link), from `*at` until
/// `end` (a field where a meta is expected, consumed) or the end (an empty last field, after
/// the last NUL, is allowed); a leading `stamp TIME` field sets the stamp.
fn parse_identities(
    fields: &[&[u8]],
    at: &mut usize,
    end: Option<&str>,
) -> Result<Identities, String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut listing = Identities::default();
    let first = *at;
    while let Some(meta) = fields.get(*at) {
        *at += 1;
        if end.is_some_and(|end| *meta == end.as_bytes()) {
            return Ok(listing);
        }
        if meta.is_empty() && *at == fields.len() {
            break;
        }
        // Borrowed, not copied, when it is UTF-8 (always, from `find`).
        let meta = String::from_utf8_lossy(meta);
        if *at == first + 1
            && let Some(stamp) = meta.strip_prefix("stamp ")
        {
            listing.stamp = moment(stamp);
            continue;
        }
        let (Some(path), Some(link)) = (fields.get(*at), fields.get(*at + 1)) else {
            return Err(format!("identity listing: truncated record {meta:?}"));
        };
        *at += 2;
        let mut parts = meta.split(' ');
        let (
            Some(kind),
            Some(mode),
            Some(size),
            Some(device),
            Some(inode),
            Some(modified),
            Some(changed),
            None,
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(format!("identity listing: unexpected record {meta:?}"));
        };
        let mut kinds = kind.chars();
        let (Some(kind), None) = (kinds.next(), kinds.next()) else {
            return Err(format!("identity listing: unexpected type in {meta:?}"));
        };
        let Ok(mode) = u32::from_str_radix(mode, 8) else {
            return Err(format!("identity listing: unexpected mode in {meta:?}"));
        };
        let (Ok(size), Ok(device), Ok(inode)) = (size.parse(), device.parse(), inode.parse())
        else {
            return Err(format!("identity listing: unexpected number in {meta:?}"));
        };
        let path = text(path);
        if path.is_empty() {
            continue; // the starting point itself
        }
        listing.entries.insert(
            path,
            Identity {
                kind,
                mode: mode & 0o7777,
                link: text(link),
                device,
                inode,
                size,
                modified: moment(modified),
                changed: moment(changed),
            },
        );
    }
    match end {
        Some(end) => Err(format!("identity listing: no `{end}` section")),
        None => Ok(listing),
    }
}

/// A delta step's output (untrusted): the base release's identity record (empty when the host
/// has none, or an unreadable one: then nothing is trusted) and the identities of the base
/// release's files before linking.
pub fn parse_delta_output(output: &[u8]) -> Result<(Identities, Identities), String> {
    let fields: Vec<&[u8]> = output.split(|byte| *byte == 0).collect();
    if fields.first() != Some(&RECORD_MARKER.as_bytes()) {
        return Err("the delta step's output does not start with the base's record".to_string());
    }
    let Some(base_at) = fields
        .iter()
        .position(|field| *field == BASE_MARKER.as_bytes())
    else {
        return Err("the delta step's output has no listing of the base release".to_string());
    };
    let mut at = 1;
    let record =
        parse_identities(&fields[..=base_at], &mut at, Some(BASE_MARKER)).unwrap_or_default();
    let mut at = base_at + 1;
    let base = parse_identities(&fields, &mut at, None)?;
    Ok((record, base))
}

/// A verify step's output (untrusted): the staged tree's identity listing (with its stamp) and
/// the digests of the files hashed.
pub fn parse_verify(output: &[u8]) -> Result<(Identities, HashMap<String, String>), String> {
    let fields: Vec<&[u8]> = output.split(|byte| *byte == 0).collect();
    let Some(marker) = fields.iter().position(|field| {
        *field == SCAN_DIGESTS.as_bytes() || *field == SCAN_DIGEST_LINES.as_bytes()
    }) else {
        return Err("the staged tree's scan ended without its digest section".to_string());
    };
    let mut at = 0;
    let listing = parse_identities(&fields[..marker], &mut at, None)?;
    if listing.stamp.is_none() {
        return Err("the staged tree's scan has no stamp".to_string());
    }
    let lines = fields[marker] == SCAN_DIGEST_LINES.as_bytes();
    let digests = parse_digests(lines, fields[marker + 1..].to_vec())?;
    Ok((listing, digests))
}

/// The reused files a delta may take as verified without hashing them: those the base
/// release's `record` holds as regular files with a ctime strictly older than the record's
/// stamp, and that `base` (the base's files before linking) shows with the very same
/// identity, ctime included. Any change of content since the record changes the ctime (even
/// when the mtime is set back), and a change within the stamp's clock tick is excluded by the
/// strict comparison.
pub fn trusted_reuse(reused: &[String], record: &Identities, base: &Identities) -> HashSet<String> {
    let Some(stamp) = record.stamp else {
        return HashSet::new();
    };
    reused
        .iter()
        .filter(|path| {
            let (Some(recorded), Some(now)) = (record.entries.get(*path), base.entries.get(*path))
            else {
                return false;
            };
            recorded.kind == 'f'
                && recorded == now
                && recorded.modified.is_some()
                && recorded.changed.is_some_and(|changed| changed < stamp)
        })
        .cloned()
        .collect()
}

/// The staged tree as a manifest to compare with the artifact's (`expected`): each regular
/// file's digest is the one hashed on the host, or, for a `trusted` reused file still the same
/// file as the base's (`base`, before linking), the artifact's own digest; a file neither
/// hashed nor trusted gets no digest (it differs, and is sent again).
pub fn staged_manifest(
    listing: &Identities,
    digests: &HashMap<String, String>,
    trusted: &HashSet<String>,
    base: &Identities,
    expected: &Manifest,
) -> Manifest {
    let expected_digests: HashMap<&str, &str> = expected
        .entries
        .iter()
        .filter_map(|entry| match &entry.kind {
            EntryKind::File { sha256 } => Some((entry.path.as_str(), sha256.as_str())),
            _ => None,
        })
        .collect();
    let entries = listing
        .entries
        .iter()
        .map(|(path, identity)| {
            let kind = match identity.kind {
                'd' => EntryKind::Directory,
                'l' => EntryKind::Symlink {
                    target: identity.link.clone(),
                },
                'f' => {
                    let unchanged = trusted.contains(path)
                        && base
                            .entries
                            .get(path)
                            .is_some_and(|before| before.same_file(identity));
                    let sha256 = match (digests.get(path), expected_digests.get(path.as_str())) {
                        (Some(digest), _) => digest.clone(),
                        (None, Some(expected)) if unchanged => expected.to_string(),
                        _ => String::new(),
                    };
                    EntryKind::File { sha256 }
                }
                other => EntryKind::File {
                    sha256: format!("(special file of type {other})"),
                },
            };
            let mode = if matches!(kind, EntryKind::Symlink { .. }) {
                0o777
            } else {
                identity.mode
            };
            Entry {
                path: path.clone(),
                kind,
                mode,
                size: 0,
            }
        })
        .collect();
    Manifest { entries }
}

/// The files a verify step hashes: every regular file of `expected` not `trusted`, as the
/// NUL-separated `./path`s it reads on stdin.
pub fn paths_to_hash(expected: &Manifest, trusted: &HashSet<String>) -> Vec<u8> {
    let mut list = Vec::new();
    for entry in &expected.entries {
        if matches!(entry.kind, EntryKind::File { .. }) && !trusted.contains(&entry.path) {
            list.extend_from_slice(b"./");
            list.extend_from_slice(entry.path.as_bytes());
            list.push(0);
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::remote::local_shell::stdout_of as sh;

    /// A record of `s/tree` (written by `record_identities`), read back.
    fn record(directory: &std::path::Path) -> Identities {
        sh(
            directory,
            &format!("s=s\n{}", record_identities(true).into_string()),
        );
        let bytes = std::fs::read(directory.join("s/identities")).expect("record");
        let fields: Vec<&[u8]> = bytes.split(|byte| *byte == 0).collect();
        parse_identities(&fields, &mut 0, None).expect("parses")
    }

    fn listing(directory: &std::path::Path) -> Identities {
        let bytes = sh(
            directory,
            &format!("find s/tree -type f -printf '{IDENTITY_FORMAT}'"),
        );
        let fields: Vec<&[u8]> = bytes.split(|byte| *byte == 0).collect();
        parse_identities(&fields, &mut 0, None).expect("parses")
    }

    #[test]
    fn a_record_vouches_for_unchanged_files_only() {
        let directory = tempfile::tempdir().expect("tempdir");
        let tree = directory.path().join("s/tree");
        std::fs::create_dir_all(tree.join("d")).expect("mkdir");
        for name in ["d/same", "d/edited", "d/touched", "d/replaced"] {
            std::fs::write(tree.join(name), "content").expect("write");
        }
        std::os::unix::fs::symlink("d/same", tree.join("link")).expect("symlink");
        // Older than the stamp by more than any clock tick.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let recorded = record(directory.path());
        assert!(recorded.stamp.is_some());
        assert_eq!(recorded.entries["link"].kind, 'l');
        assert_eq!(recorded.entries["link"].link, "d/same");
        assert_eq!(recorded.entries["d"].kind, 'd');

        // Same size, mtime set back: only the ctime tells.
        let edited = tree.join("d/edited");
        let mtime = std::fs::metadata(&edited)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&edited, "CONTENT").expect("rewrite");
        std::fs::File::options()
            .write(true)
            .open(&edited)
            .and_then(|file| file.set_modified(mtime))
            .expect("mtime back");
        std::fs::File::options()
            .write(true)
            .open(tree.join("d/touched"))
            .and_then(|file| file.set_modified(std::time::SystemTime::now()))
            .expect("touch");
        std::fs::remove_file(tree.join("d/replaced")).expect("rm");
        std::fs::write(tree.join("d/replaced"), "content").expect("write");

        let now = listing(directory.path());
        let reused: Vec<String> = ["d/same", "d/edited", "d/touched", "d/replaced", "missing"]
            .map(String::from)
            .to_vec();
        let trusted = trusted_reuse(&reused, &recorded, &now);
        assert_eq!(trusted, HashSet::from(["d/same".to_string()]));

        // No stamp, or a file changed within the stamp's tick: nothing vouched for.
        let mut unstamped = recorded.clone();
        unstamped.stamp = None;
        assert!(trusted_reuse(&reused, &unstamped, &now).is_empty());
        let mut racy = recorded.clone();
        racy.stamp = recorded.entries["d/same"].changed;
        assert!(trusted_reuse(&reused, &racy, &now).is_empty());
    }

    #[test]
    fn the_staged_manifest_takes_trusted_files_only_while_they_are_the_same_file() {
        let file = |inode: u64| Identity {
            kind: 'f',
            mode: 0o644,
            link: String::new(),
            device: 1,
            inode,
            size: 7,
            modified: Some((1, 0)),
            changed: Some((2, 0)),
        };
        let base = Identities {
            stamp: None,
            entries: BTreeMap::from([("a".to_string(), file(1)), ("b".to_string(), file(2))]),
        };
        let mut staged = base.clone();
        staged.entries.get_mut("a").expect("a").changed = Some((9, 0)); // linked
        staged.entries.insert("b".to_string(), file(3)); // another inode now
        staged.entries.insert("c".to_string(), file(4)); // sent, hashed
        let expected = Manifest {
            entries: ["a", "b", "c"]
                .map(|path| Entry {
                    path: path.to_string(),
                    kind: EntryKind::File {
                        sha256: format!("{path}-digest"),
                    },
                    mode: 0o644,
                    size: 7,
                })
                .to_vec(),
        };
        let trusted = HashSet::from(["a".to_string(), "b".to_string()]);
        let digests = HashMap::from([("c".to_string(), "c-digest".to_string())]);
        let manifest = staged_manifest(&staged, &digests, &trusted, &base, &expected);
        assert_eq!(
            expected.staged_differences(&manifest).expect("comparable"),
            ["b"]
        );
        assert_eq!(paths_to_hash(&expected, &trusted), b"./c\0");
    }

    #[test]
    fn outputs_are_parsed_by_section_and_hostile_ones_refused() {
        let entry = "f 644 3 2049 12 1700000000.0000000000 1700000001.1234567890\0a/b\0\0";
        let output = format!("deploy-record\0stamp 1700000002.5\0{entry}deploy-base\0{entry}");
        let (record, base) = parse_delta_output(output.as_bytes()).expect("parses");
        assert_eq!(record.stamp, Some((1_700_000_002, 500_000_000)));
        assert_eq!(
            base.entries["a/b"].changed,
            Some((1_700_000_001, 123_456_789))
        );
        assert_eq!(record.entries, base.entries);
        // An unreadable record vouches for nothing; the base listing must parse.
        let (record, _) =
            parse_delta_output(format!("deploy-record\0junk\0deploy-base\0{entry}").as_bytes())
                .expect("parses");
        assert_eq!(record, Identities::default());
        assert!(parse_delta_output(b"deploy-record\0deploy-base\0junk\0a\0\0").is_err());
        assert!(parse_delta_output(format!("{entry}deploy-base\0").as_bytes()).is_err());
        assert!(parse_delta_output(b"deploy-record\0").is_err());

        let verify = format!(
            "stamp 5.0\0{entry}deploy-digest-lines\0{} *./a/b\n",
            "0".repeat(64)
        );
        let (listing, digests) = parse_verify(verify.as_bytes()).expect("parses");
        assert!(listing.entries.contains_key("a/b"));
        assert_eq!(digests["a/b"], "0".repeat(64));
        assert!(
            parse_verify(format!("{entry}deploy-digests\0").as_bytes()).is_err(),
            "no stamp"
        );
        assert!(parse_verify(b"stamp 5.0\0").is_err(), "no digest section");
        assert_eq!(moment("12"), Some((12, 0)));
        assert_eq!(moment("-1.5"), None);
        assert_eq!(moment("1.x"), None);
    }
}
