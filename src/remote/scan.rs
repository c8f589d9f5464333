//! Scan: the programs that read a release's files on a host, for `diff` and `status --verify`:
//! the manifest recorded at push time, and a listing of what is there now with the digest of
//! every regular file, parsed into a `Manifest` (remote output is untrusted: a record that does
//! not parse is an error).

use super::layout;
use super::script::{Script, join, quote, script};
use crate::artifact::{Entry, EntryKind, Manifest};
use crate::inventory::Version;

/// Prints the manifest recorded for `version` at push time.
pub fn manifest_command(base_dir: &str, version: &Version) -> String {
    script!(
        "[ -f {file} ] || {{ echo {missing} >&2; exit 1; }}\ncat {file}\n",
        file = quote(&join(base_dir, &layout::manifest(version))),
        missing = quote(&no_manifest_recorded(version)),
    )
    .into_string()
}

/// Why a release has no manifest to read: none was recorded for it.
pub fn no_manifest_recorded(version: &Version) -> String {
    format!("no manifest recorded for {version}")
}

/// Marker between the listing and the digests in scan output when the digests are
/// `sha256sum -z` records (`<sha256>  <path>` NUL-terminated).
pub(super) const SCAN_DIGESTS: &str = "deploy-digests";
/// Marker when the digests are `openssl dgst -sha256 -r` lines (`<sha256> *<path>`), several
/// times faster on CPUs with SHA instructions. The paths of a release never hold a newline
/// (the artifact check refuses control characters); a name that does cannot match a record.
pub(super) const SCAN_DIGEST_LINES: &str = "deploy-digest-lines";

/// The listing of every entry of the current directory (type, mode, size, path, link target)
/// and the sha256 of every regular file, NUL-separated so that no file name can forge a record.
/// Needs GNU find and coreutils (`deploy check` reports them).
pub(super) fn scan_program() -> Script {
    script!(
        "find . -printf '%y %m %s\\0%p\\0%l\\0' || exit 1\n\
         if command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then\n\
         \x20 printf '{lines}\\0'\n\
         \x20 find . -type f -exec openssl dgst -sha256 -r {{}} + || exit 1\n\
         else\n\
         \x20 printf '{marker}\\0'\n\
         \x20 find . -type f -exec sha256sum -z -- {{}} + || exit 1\n\
         fi\n",
        marker = SCAN_DIGESTS,
        lines = SCAN_DIGEST_LINES,
    )
}

/// Lists every entry of `releases/<version>` and the sha256 of every regular file, in one
/// command (see `scan_program`).
pub fn scan_command(base_dir: &str, version: &Version) -> String {
    script!(
        "cd -- {release} || exit 1\n{scan}",
        release = quote(&join(base_dir, &layout::release(version))),
        scan = scan_program(),
    )
    .into_string()
}

/// The digest section of scan output (after its marker; `lines`: `openssl dgst -r` lines,
/// else `sha256sum -z` records), by path without its leading `./`.
pub(super) fn parse_digests(
    lines: bool,
    rest: Vec<&[u8]>,
) -> Result<std::collections::HashMap<String, String>, String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut digests = std::collections::HashMap::new();
    let records: Vec<&[u8]> = if lines {
        let [section] = rest.as_slice() else {
            return Err("release scan: unexpected NUL in the digest lines".to_string());
        };
        section.split(|byte| *byte == b'\n').collect()
    } else {
        rest
    };
    let separator = if lines { " *" } else { "  " };
    for record in records {
        if record.is_empty() {
            continue;
        }
        let record = text(record);
        let Some((digest, path)) = record.split_once(separator) else {
            return Err(format!("release scan: unexpected digest record {record:?}"));
        };
        digests.insert(
            path.strip_prefix("./").unwrap_or(path).to_string(),
            digest.to_string(),
        );
    }
    Ok(digests)
}

/// Builds a manifest of what is on the host from `scan_command` output (untrusted).
pub fn parse_scan(output: &[u8]) -> Result<Manifest, String> {
    let mut fields = output.split(|byte| *byte == 0);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let normalize = |path: &str| path.strip_prefix("./").unwrap_or(path).to_string();
    let mut listed: Vec<(String, char, u32, String)> = Vec::new();
    let lines = loop {
        let Some(meta) = fields.next() else {
            return Err("release scan ended without its digest section".to_string());
        };
        if meta == SCAN_DIGESTS.as_bytes() {
            break false;
        }
        if meta == SCAN_DIGEST_LINES.as_bytes() {
            break true;
        }
        let (Some(path), Some(link)) = (fields.next(), fields.next()) else {
            return Err("release scan: truncated record".to_string());
        };
        let meta = text(meta);
        let mut parts = meta.split(' ');
        let kind = parts.next().and_then(|kind| kind.chars().next());
        let mode = parts
            .next()
            .and_then(|mode| u32::from_str_radix(mode, 8).ok());
        let (Some(kind), Some(mode)) = (kind, mode) else {
            return Err(format!("release scan: unexpected record {meta:?}"));
        };
        let path = normalize(&text(path));
        if path == "." {
            continue;
        }
        listed.push((path, kind, mode, text(link)));
    };
    let digests = parse_digests(lines, fields.collect())?;
    let mut entries: Vec<Entry> = listed
        .into_iter()
        .map(|(path, kind, mode, link)| {
            let kind = match kind {
                'd' => EntryKind::Directory,
                'l' => EntryKind::Symlink { target: link },
                'f' => EntryKind::File {
                    sha256: digests.get(&path).cloned().unwrap_or_default(),
                },
                other => EntryKind::File {
                    sha256: format!("(special file of type {other})"),
                },
            };
            let mode = if matches!(kind, EntryKind::Symlink { .. }) {
                0o777
            } else {
                mode & 0o7777
            };
            Entry {
                path,
                kind,
                mode,
                size: 0,
            }
        })
        .collect();
    entries.sort_by(|left, right| left.path.cmp(&right.path));
    Ok(Manifest { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    #[test]
    fn a_local_scan_matches_what_was_written_and_sees_changes() {
        let directory = tempfile::tempdir().expect("tempdir");
        let release = directory.path().join("app/releases/v1");
        std::fs::create_dir_all(release.join("bin")).expect("mkdir");
        std::fs::write(release.join("bin/run"), "#!/bin/sh\n").expect("write");
        std::fs::write(release.join("odd\nname"), "x").expect("write");
        std::os::unix::fs::symlink("bin/run", release.join("start")).expect("symlink");
        let scan = |directory: &std::path::Path| {
            let stdout = crate::remote::local_shell::stdout_of(
                directory,
                &scan_command("app", &version("v1")),
            );
            parse_scan(&stdout).expect("parses")
        };
        let manifest = scan(directory.path());
        let paths: Vec<&str> = manifest
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        assert_eq!(paths, ["bin", "bin/run", "odd\nname", "start"]);
        assert!(
            matches!(&manifest.entries[3].kind, EntryKind::Symlink { target } if target == "bin/run")
        );
        std::fs::write(release.join("bin/run"), "changed").expect("write");
        let changed = scan(directory.path());
        assert_eq!(
            manifest.diff(&changed).modified,
            vec!["bin/run".to_string()]
        );
    }

    #[test]
    fn digest_lines_of_openssl_are_read_like_sha256sum_records() {
        let digest = "a".repeat(64);
        let listing = b"f 644 1\0./x y\0\0".to_vec();
        let mut lines = listing.clone();
        lines.extend_from_slice(format!("deploy-digest-lines\0{digest} *./x y\n").as_bytes());
        let mut records = listing;
        records.extend_from_slice(format!("deploy-digests\0{digest}  ./x y\0").as_bytes());
        let from_lines = parse_scan(&lines).expect("lines parse");
        assert_eq!(from_lines, parse_scan(&records).expect("records parse"));
        assert!(
            matches!(&from_lines.entries[0].kind, EntryKind::File { sha256 } if *sha256 == digest)
        );
    }

    #[test]
    fn hostile_scan_output_is_an_error() {
        assert!(parse_scan(b"f 644 1\0a\0").is_err(), "truncated");
        assert!(parse_scan(b"f 644 1\0a\0\0").is_err(), "no digest section");
        assert!(
            parse_scan(b"zz\0a\0\0deploy-digests\0").is_err(),
            "bad mode"
        );
        assert!(
            parse_scan(b"deploy-digests\0nospaces\0").is_err(),
            "bad digest record"
        );
        assert!(
            parse_scan(b"deploy-digest-lines\0nostar\n").is_err(),
            "bad digest line"
        );
        assert!(
            parse_scan(b"deploy-digest-lines\0a *./x\0b *./y\n").is_err(),
            "a NUL among the digest lines"
        );
    }
}
