//! Scan: the programs that read a release's files on a host, for `diff`, `status --verify` and
//! a delta's base: the manifest recorded at push time (one section format, printed by the
//! manifest command and at the end of a push's lock facts), and a listing of what is there now with the digest of
//! every regular file, parsed into a `Manifest` (remote output is untrusted: a record that does
//! not parse is an error).

use super::layout;
use super::script::{Script, join, quote, script};
use crate::artifact::{Entry, EntryKind, Manifest};
use crate::inventory::Version;

/// Prints the manifest recorded for `version` at push time, as a [`RECORDED_MANIFEST`] section.
pub fn manifest_command(base_dir: &str, version: &Version) -> String {
    manifest_section(&quote(&join(base_dir, &layout::manifest(version))), None).into_string()
}

/// Line that starts a recorded manifest in a host's answer (`manifest_command`, and the end of
/// a push's lock facts): the marker, the manifest (whole, or up to a cap and one byte more) and
/// a newline of the script's own; or the marker and ` -` when none is recorded.
pub const RECORDED_MANIFEST: &str = "RECORDED-MANIFEST";

/// What a host said of a release's recorded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedManifest {
    /// The manifest's text, whole (no longer than the cap asked for).
    Recorded(String),
    /// The release has no recorded manifest.
    Absent,
}

/// Why a release has no manifest to read: none was recorded for it.
pub fn no_manifest_recorded(version: &Version) -> String {
    format!("no manifest recorded for {version}")
}

/// The shell that prints the [`RECORDED_MANIFEST`] section of the manifest file `file` (a shell
/// word), whole or, with `cap`, its first `cap` bytes and one more (to show it is longer). A
/// read that fails ends the script before the section's closing newline.
pub(super) fn manifest_section(file: &Script, cap: Option<u64>) -> Script {
    let read = match cap {
        Some(cap) => script!("head -c {limit}", limit = &(cap + 1)),
        None => script!("cat"),
    };
    script!(
        "if [ -f {file} ]; then printf '{marker}\\n' && {read} -- {file} && printf '\\n' || exit 1\n\
         else printf '{marker} -\\n'; fi\n",
        file = file,
        read = &read,
        marker = RECORDED_MANIFEST,
    )
}

/// Splits a host's answer into what comes before its [`RECORDED_MANIFEST`] section and the
/// manifest the section holds. A manifest longer than `cap`, or a section that does not read as
/// the script writes it (cut short, or anything after it), is left out (`None`).
pub fn split_recorded_manifest(text: &str, cap: u64) -> (&str, Option<RecordedManifest>) {
    let start = if text.starts_with(RECORDED_MANIFEST) {
        Some(0)
    } else {
        text.find(&format!("\n{RECORDED_MANIFEST}"))
            .map(|index| index + 1)
    };
    let Some(start) = start else {
        return (text, None);
    };
    let before = &text[..start];
    let section = &text[start + RECORDED_MANIFEST.len()..];
    let manifest = match section.split_once('\n') {
        // The script ends the manifest with a newline of its own.
        Some(("", content)) => content
            .strip_suffix('\n')
            .filter(|content| content.len() as u64 <= cap)
            .map(|content| RecordedManifest::Recorded(content.to_string())),
        Some((" -", "")) => Some(RecordedManifest::Absent),
        _ => None,
    };
    (before, manifest)
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

    /// `manifest_command` run by a real `sh`: the recorded manifest comes back whole, byte for
    /// byte, and a release without one says so.
    #[test]
    fn the_manifest_command_answers_with_a_section() {
        let directory = tempfile::tempdir().expect("tempdir");
        let v1 = version("v1");
        let file = directory.path().join("app").join(layout::manifest(&v1));
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        let manifest = "deploy-manifest 1\nf\t644\t3\tabc\tx\n";
        std::fs::write(&file, manifest).expect("write");
        let answer = |version: &Version| {
            let output = crate::remote::local_shell::run(
                directory.path(),
                &manifest_command("app", version),
            );
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).expect("utf-8")
        };
        assert_eq!(
            split_recorded_manifest(&answer(&v1), u64::MAX),
            ("", Some(RecordedManifest::Recorded(manifest.to_string())))
        );
        assert_eq!(
            split_recorded_manifest(&answer(&version("v2")), u64::MAX),
            ("", Some(RecordedManifest::Absent))
        );
    }

    /// Sections that do not read as the script writes them are left out, never guessed at.
    #[test]
    fn a_malformed_recorded_manifest_section_is_left_out() {
        let facts = "base present\ncurrent releases/v1\n";
        for section in [
            "RECORDED-MANIFEST\nno newline of the script's own",
            "RECORDED-MANIFEST v1\ndeploy-manifest 1\n\n",
            "RECORDED-MANIFEST x\n",
            "RECORDED-MANIFEST -\nsomething after none\n",
            "RECORDED-MANIFESTO\n\n",
        ] {
            let text = format!("{facts}{section}");
            assert_eq!(
                split_recorded_manifest(&text, 1 << 20),
                (facts, None),
                "{section:?}"
            );
        }
        let text = format!("{facts}RECORDED-MANIFEST\ndeploy-manifest 1\n\n");
        assert_eq!(
            split_recorded_manifest(&text, 1 << 20).1,
            Some(RecordedManifest::Recorded(
                "deploy-manifest 1\n".to_string()
            ))
        );
    }

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
