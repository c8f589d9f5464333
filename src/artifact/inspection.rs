//! Inspection: the one streaming pass over a `.tar.gz` that yields its digest, sizes and
//! manifest ([`Artifact`]), or the reason it is refused ([`ArtifactError`], in `error`).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::ArtifactError;
use super::members::{Failure, MemberPolicy, scan_members};
use super::streaming::{
    BUFFER_SIZE, Budgeted, Copying, GzipMembers, HEADER_BUDGET, HashedSource, ReadAhead, Unpacked,
    check_gzip_magic, drain_zeros,
};
use crate::manifest::{Manifest, Sha256};

/// A validated release artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Where the artifact was read from (as given by the caller).
    pub path: PathBuf,
    /// sha256 of the whole `.tar.gz` file.
    pub sha256: Sha256,
    /// Size of the `.tar.gz` file in bytes.
    pub size: u64,
    /// Sum of the sizes of the regular files in the archive.
    pub unpacked_size: u64,
    /// Every member of the archive (except the root directory `.`), sorted by path, named as
    /// it lands in the release (after `strip_components`). Shared: every host's verification
    /// of a delta push reads it off the task that runs the hosts (`executor::off_task`).
    pub manifest: std::sync::Arc<Manifest>,
    /// `--strip-components` for the host's `tar` on a full push (0: none); see
    /// `members::Scanned::tar_strip`.
    pub tar_strip: usize,
    /// The one top directory every member sits under (`myapp-1.0`), unless the names start
    /// with `./` (built from inside the directory, `tar -C build -czf app.tar.gz .`).
    pub single_top_directory: Option<String>,
}

/// Opens `path` and inspects it under `policy` (the service's `allow_setid`; the default policy
/// is the strict one); see [`inspect_reader_with`].
#[cfg(test)]
pub fn inspect_with(path: &Path, policy: &MemberPolicy) -> Result<Artifact, ArtifactError> {
    inspect_keeping(path, policy, None).map(|(artifact, _)| artifact)
}

/// [`inspect_with`], also keeping the decompressed tar in `copy` (an unlinked temporary file)
/// when it fits in [`UNPACKED_COPY_LIMIT`] bytes: a delta push builds its streams from it
/// instead of inflating the artifact a second time (see `delta::SharedStreams`).
pub fn inspect_keeping(
    path: &Path,
    policy: &MemberPolicy,
    copy: Option<File>,
) -> Result<(Artifact, Option<Unpacked>), ArtifactError> {
    let file = File::open(path).map_err(|io| ArtifactError::Open {
        path: path.to_path_buf(),
        io,
    })?;
    inspect_reader_keeping(file, path, policy, copy)
}

/// Most bytes of decompressed tar [`inspect_keeping`] keeps (beyond it, the copy is dropped).
pub const UNPACKED_COPY_LIMIT: u64 = 1024 * 1024 * 1024;

/// Reads a `.tar.gz` stream once, to its end: validates it (member rules under `policy`) and
/// computes its digest and manifest. `name` is used in the result and in error messages.
#[cfg(test)]
pub fn inspect_reader_with<R: Read + Send>(
    reader: R,
    name: &Path,
    policy: &MemberPolicy,
) -> Result<Artifact, ArtifactError> {
    inspect_reader_keeping(reader, name, policy, None).map(|(artifact, _)| artifact)
}

fn inspect_reader_keeping<R: Read + Send>(
    reader: R,
    name: &Path,
    policy: &MemberPolicy,
    copy: Option<File>,
) -> Result<(Artifact, Option<Unpacked>), ArtifactError> {
    // Reading and hashing the file run on a thread of their own (`HashedSource`), inflating on
    // another (`ReadAhead`), the tar parser on this one.
    std::thread::scope(|scope| {
        let mut source = HashedSource::start(scope, reader);
        check_gzip_magic(&mut source, name)?;
        let inflating = ReadAhead::start(scope, "artifact-inflate", GzipMembers::new(source), ());
        scan_inflated(inflating, name, policy, copy)
    })
}

/// The inspection's pass over the decompressed tar (see [`inspect_reader_keeping`]).
fn scan_inflated<R: Read + Send>(
    inflating: ReadAhead<'_, GzipMembers<'_, R>>,
    name: &Path,
    policy: &MemberPolicy,
    copy: Option<File>,
) -> Result<(Artifact, Option<Unpacked>), ArtifactError> {
    let budget = Rc::new(Cell::new(HEADER_BUDGET));
    let mut archive = tar::Archive::new(Budgeted {
        inner: Copying::new(inflating, copy, UNPACKED_COPY_LIMIT),
        remaining: Rc::clone(&budget),
    });
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let scanned = scan_members(&mut archive, name, policy, &mut buffer, &budget);
    let (mut inflating, unpacked) = archive.into_inner().inner.into_parts();
    let scanned = match scanned {
        Ok(result) => result,
        Err(Failure::Rejected(error)) => return Err(error),
        Err(Failure::Stream(error)) => return Err(classify(inflating, error, name)),
    };

    // The tar parser stops at the end-of-archive marker; read the rest so the digest covers the
    // whole file and the gzip trailers are verified. (`inflating` is past the budget guard.)
    match drain_zeros(&mut inflating, &mut buffer) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ArtifactError::Corrupt {
                path: name.to_path_buf(),
                reason: "non-zero data after the tar end-of-archive marker".to_string(),
            });
        }
        Err(error) => return Err(classify(inflating, error, name)),
    }
    let stream = inflating
        .into_inner()
        .map_err(|error| ArtifactError::Corrupt {
            path: name.to_path_buf(),
            reason: error.to_string(),
        })?;

    if scanned.entries.is_empty() {
        return Err(ArtifactError::Empty {
            path: name.to_path_buf(),
        });
    }
    let single_top_directory = (!scanned.dot_prefixed)
        .then(|| single_top_directory(&scanned.entries))
        .flatten()
        .map(str::to_string);
    let (sha256, size) = stream.finish().map_err(|error| ArtifactError::Corrupt {
        path: name.to_path_buf(),
        reason: error.to_string(),
    })?;
    let sha256 = Sha256::parse(&sha256).map_err(|reason| ArtifactError::Corrupt {
        path: name.to_path_buf(),
        reason,
    })?;
    let artifact = Artifact {
        path: name.to_path_buf(),
        sha256,
        size,
        unpacked_size: scanned.unpacked_size,
        manifest: std::sync::Arc::new(Manifest {
            entries: scanned.entries,
        }),
        tar_strip: scanned.tar_strip,
        single_top_directory,
    };
    Ok((artifact, unpacked))
}

/// The [`ArtifactError`] of an error met while streaming: a read failure of the file, or a
/// corrupt stream (see `GzipMembers::classify`).
fn classify<R: Read + Send>(
    inflating: ReadAhead<'_, GzipMembers<R>>,
    error: io::Error,
    name: &Path,
) -> ArtifactError {
    match inflating.into_inner() {
        Ok(mut stream) => stream.classify(error, name),
        Err(stopped) => ArtifactError::Corrupt {
            path: name.to_path_buf(),
            reason: format!("{error} ({stopped})"),
        },
    }
}

/// The one directory every member sits in (`myapp-1.0` for `myapp-1.0/bin/app`, ...), when
/// there is exactly one top-level name, it is a directory and something lies under it.
fn single_top_directory(entries: &[crate::manifest::Entry]) -> Option<&str> {
    let top = |path: &str| path.split('/').next().unwrap_or(path).to_string();
    let first = top(&entries.first()?.path);
    let mut nested = false;
    for entry in entries {
        if top(&entry.path) != first {
            return None;
        }
        if entry.path == first && !matches!(entry.kind, crate::manifest::EntryKind::Directory) {
            return None;
        }
        nested |= entry.path.len() > first.len();
    }
    let first_entry = entries.first()?;
    nested.then(|| {
        first_entry
            .path
            .split('/')
            .next()
            .unwrap_or(&first_entry.path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::{file_entry, other_entry, sample_manifest, sha256_hex};
    use crate::manifest::{Diff, EntryKind};
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::{self, Write};
    use tar::{Builder, EntryType, Header};

    const NAME: &str = "dist/app.tar.gz";

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

    #[test]
    fn valid_archive_gives_digest_sizes_and_manifest() {
        let bytes = sample().gz();
        let artifact = inspect_bytes(&bytes).unwrap();
        assert_eq!(artifact.path, Path::new(NAME));
        assert_eq!(artifact.sha256, sha256_hex(&bytes));
        assert_eq!(artifact.size, bytes.len() as u64);
        assert_eq!(artifact.unpacked_size, 18 + 10);
        assert_eq!(*artifact.manifest, sample_manifest());
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
        assert_eq!(*artifact.manifest, sample_manifest());
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

    fn stripped(bytes: &[u8], strip: usize) -> Result<Artifact, ArtifactError> {
        let policy = MemberPolicy {
            allow_setid: false,
            strip_components: Some(strip),
        };
        inspect_reader_with(bytes, Path::new(NAME), &policy)
    }

    fn paths(artifact: &Artifact) -> Vec<&str> {
        artifact
            .manifest
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect()
    }

    #[test]
    fn one_top_directory_is_found_unless_names_start_with_dot_slash() {
        let wrapped = Tarball::new()
            .directory("myapp-1.0/", 0o755)
            .file("myapp-1.0/bin/app", 0o755, b"app")
            .file("myapp-1.0/README", 0o644, b"r")
            .gz();
        let artifact = inspect_bytes(&wrapped).unwrap();
        assert_eq!(artifact.single_top_directory.as_deref(), Some("myapp-1.0"));
        let implied = Tarball::new().file("myapp-1.0/x", 0o644, b"x").gz();
        assert_eq!(
            inspect_bytes(&implied)
                .unwrap()
                .single_top_directory
                .as_deref(),
            Some("myapp-1.0")
        );
        // `tar -C build -czf app.tar.gz .`: the `./` is not a directory of the release.
        let dotted = Tarball::new()
            .directory("./", 0o755)
            .directory("./public/", 0o755)
            .file("./public/index.html", 0o644, b"i")
            .gz();
        assert_eq!(inspect_bytes(&dotted).unwrap().single_top_directory, None);
        for bytes in [
            Tarball::new()
                .file("a/x", 0o644, b"x")
                .file("b", 0o644, b"b")
                .gz(),
            Tarball::new().file("app", 0o755, b"app").gz(),
            Tarball::new().directory("empty/", 0o755).gz(),
        ] {
            assert_eq!(inspect_bytes(&bytes).unwrap().single_top_directory, None);
        }
    }

    #[test]
    fn strip_components_drops_leading_directories_everywhere() {
        let wrapped = Tarball::new()
            .directory("myapp-1.0/", 0o755)
            .directory("myapp-1.0/bin/", 0o755)
            .file("myapp-1.0/bin/app", 0o755, b"app")
            .hardlink("myapp-1.0/bin/app-too", "myapp-1.0/bin/app")
            .symlink("myapp-1.0/start", "bin/app")
            .gz();
        let artifact = stripped(&wrapped, 1).unwrap();
        assert_eq!(paths(&artifact), ["bin", "bin/app", "bin/app-too", "start"]);
        assert_eq!(artifact.tar_strip, 1);
        assert_eq!(artifact.single_top_directory, None);
        let hardlink = &artifact.manifest.entries[2];
        assert_eq!(
            hardlink.kind,
            EntryKind::Hardlink {
                target: "bin/app".to_string()
            }
        );
        // The sha256 stays the artifact's: stripping names changes no byte of it.
        assert_eq!(artifact.sha256, inspect_bytes(&wrapped).unwrap().sha256);
        // `./myapp-1.0/...`: the same release, but tar counts the `.` too.
        let dotted = Tarball::new()
            .directory("./", 0o755)
            .directory("./myapp-1.0/", 0o755)
            .file("./myapp-1.0/bin/app", 0o755, b"app")
            .gz();
        let artifact = stripped(&dotted, 1).unwrap();
        assert_eq!(paths(&artifact), ["bin/app"]);
        assert_eq!(artifact.tar_strip, 2);
        assert_eq!(stripped(&wrapped, 0).unwrap().tar_strip, 0);
    }

    #[test]
    fn strip_components_refuses_what_it_cannot_strip_alike() {
        let loose = Tarball::new()
            .file("myapp-1.0/bin/app", 0o755, b"app")
            .file("README", 0o644, b"r")
            .gz();
        let error = stripped(&loose, 1).unwrap_err().to_string();
        assert!(error.contains("member `README`"), "{error}");
        assert!(
            error.contains("strip_components = 1 would drop it"),
            "{error}"
        );
        let mixed = Tarball::new()
            .file("myapp-1.0/a", 0o644, b"a")
            .file("./myapp-1.0/b", 0o644, b"b")
            .gz();
        let error = stripped(&mixed, 1).unwrap_err().to_string();
        assert!(error.contains("mixed `./` prefixes"), "{error}");
        // A link that stays inside `myapp-1.0/` may leave the release once that is stripped.
        let climbing = Tarball::new()
            .file("top/x", 0o644, b"x")
            .symlink("top/link", "../x")
            .gz();
        assert!(inspect_bytes(&climbing).is_ok());
        let error = stripped(&climbing, 1).unwrap_err().to_string();
        assert!(error.contains("outside the release"), "{error}");
    }

    #[test]
    fn zero_padding_is_accepted_and_hashed() {
        // Tar record padding inside the gzip stream.
        let mut tar = sample().tar();
        tar.resize(tar.len() + 10 * 1024, 0);
        let bytes = gzip(&tar);
        assert_eq!(*inspect_bytes(&bytes).unwrap().manifest, sample_manifest());

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
        assert_eq!(*artifact.manifest, sample_manifest());
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
    fn a_refusal_early_in_a_large_archive_stops_the_inflating_thread() {
        // The refused member comes first; megabytes follow, more than the chunks the inflating
        // thread may hold: it must stop when the parser gives up (the scope joins it), not
        // wait for a reader that is gone. A hang here is the failure.
        let filler = vec![7u8; 40 * BUFFER_SIZE];
        let bytes = Tarball::new()
            .special("dev/thing", EntryType::Fifo)
            .file("big", 0o644, &filler)
            .gz();
        assert_member_error(&bytes, "dev/thing", "fifos are not allowed");
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

    const ALLOW_SETID: MemberPolicy = MemberPolicy {
        allow_setid: true,
        strip_components: None,
    };

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
    fn manifest_text_from_an_artifact_round_trips() {
        let manifest = inspect_bytes(&sample().gz()).unwrap().manifest;
        assert_eq!(Manifest::from_text(&manifest.to_text()).unwrap(), *manifest);
    }
}
