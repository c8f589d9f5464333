//! Scan: the programs that read a release's files on a host, for `diff` and `status --verify`:
//! the manifest recorded at push time, and a listing of what is there now with the digest of
//! every regular file, parsed into a `Manifest` (remote output is untrusted: a record that does
//! not parse is an error).

use super::layout;
use super::script::{join, quote, script};
use crate::artifact::{Entry, EntryKind, Manifest};
use crate::inventory::Version;

/// Prints the manifest recorded for `version` at push time.
pub fn manifest_command(base_dir: &str, version: &Version) -> String {
    script!(
        "[ -f {file} ] || {{ echo 'no manifest recorded for {version}' >&2; exit 1; }}\ncat {file}\n",
        file = quote(&join(base_dir, &layout::manifest(version))),
        version = version,
    )
    .into_string()
}

/// Marker between the listing and the digests in `scan_command` output.
const SCAN_DIGESTS: &str = "deploy-digests";

/// Lists every entry of `releases/<version>` (type, mode, size, path, link target) and the
/// sha256 of every regular file, in one command, NUL-separated so that no file name can forge
/// a record. Needs GNU find and coreutils (`deploy check` reports them).
pub fn scan_command(base_dir: &str, version: &Version) -> String {
    script!(
        "cd -- {release} || exit 1\n\
         find . -printf '%y %m %s\\0%p\\0%l\\0' || exit 1\n\
         printf '{marker}\\0'\n\
         find . -type f -exec sha256sum -z -- {{}} + || exit 1\n",
        release = quote(&join(base_dir, &layout::release(version))),
        marker = SCAN_DIGESTS,
    )
    .into_string()
}

/// Builds a manifest of what is on the host from `scan_command` output (untrusted).
pub fn parse_scan(output: &[u8]) -> Result<Manifest, String> {
    let mut fields = output.split(|byte| *byte == 0);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let normalize = |path: &str| path.strip_prefix("./").unwrap_or(path).to_string();
    let mut listed: Vec<(String, char, u32, String)> = Vec::new();
    loop {
        let Some(meta) = fields.next() else {
            return Err("release scan ended without its digest section".to_string());
        };
        if meta == SCAN_DIGESTS.as_bytes() {
            break;
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
    }
    let mut digests = std::collections::HashMap::new();
    for record in fields {
        if record.is_empty() {
            continue;
        }
        let record = text(record);
        let Some((digest, path)) = record.split_once("  ") else {
            return Err(format!("release scan: unexpected digest record {record:?}"));
        };
        digests.insert(normalize(path), digest.to_string());
    }
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
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(scan_command("app", &version("v1")))
                .current_dir(directory)
                .output()
                .expect("sh runs");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            parse_scan(&output.stdout).expect("parses")
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
    }
}
