//! Delta streams: a tar stream of some of the artifact's members, built from the `.tar.gz` in
//! constant memory, for a delta push (`Step::Delta`) or for sending members again
//! (`Step::Repair`).
//!
//! The artifact is read again, through the same readers as its inspection (gzip member chain,
//! hashing), and its members are written into a new tar under `tree/`: for a delta, every
//! member except the regular files the host reuses (so the directory skeleton, symlinks,
//! hardlinks and changed files), after a first member `reuse` listing the reused paths
//! (NUL-separated) and the artifact's manifest text (`manifest`); for a repair, only the members named. Headers (modes, times) are copied
//! from the artifact. The stream is gzip-compressed at the fastest level when asked (the plan
//! asks when the artifact itself compresses its contents). The artifact's sha256 is checked
//! again at the end, before the end-of-archive marker is written: an artifact that changed
//! since it was checked ends the stream with an error, and the step fails.
//!
//! A thread writes the stream into a bounded channel (8 chunks of 64 KiB) that the upload reads
//! as an `AsyncRead`: memory does not depend on the artifact's size (only the list of reused
//! paths grows with the number of files, like the manifest).
//!
//! Building a stream costs a whole pass over the artifact (inflating it is most of a push's
//! controller CPU), so [`SharedStreams`] builds each distinct delta stream once per run, into
//! an unlinked temporary file, and every host with the same base reads its own view of that
//! file: the pass is paid once per distinct base, not once per host. When the inspection kept
//! the decompressed tar (`inspect_keeping`, up to 1 GiB, in an unlinked temporary file), the
//! streams are built from that instead: no second inflate, and the members not sent are skipped
//! by seeking, so a delta's build reads little more than the headers and the changed files.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::EntryType;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{OnceCell, mpsc};

use super::members::release_path;
use super::streaming::{BUFFER_SIZE, GzipMembers, HashedSource, Unpacked, drain_zeros};
use crate::manifest::Sha256;
use crate::remote::delta::{MANIFEST_MEMBER, REUSE_MEMBER, TREE_MEMBER};

/// Which members of the artifact a stream carries.
#[derive(Debug, Clone)]
enum Members {
    /// Every member except the regular files `reused` (the host links them from its base
    /// release), after a `reuse` member that lists them and a `manifest` member (the
    /// artifact's manifest text, which the host records).
    Delta {
        reused: Arc<Vec<String>>,
        manifest: Arc<String>,
    },
    /// Only the members at these paths.
    Only(Arc<Vec<String>>),
}

/// Chunks in flight between the producing thread and the upload.
const CHANNEL_CHUNKS: usize = 8;

/// The stream of `members` of the artifact at `path` (whose sha256 must still be `sha256`),
/// gzip-compressed when `compress`, read as an `AsyncRead`. Member names (and hardlink
/// targets) lose their first `strip` directories (`strip_components`), as in the manifest.
fn member_stream(
    path: &Path,
    sha256: &Sha256,
    members: Members,
    compress: bool,
    strip: usize,
) -> MemberStream {
    let path = path.to_path_buf();
    let sha256 = sha256.clone();
    stream_from(move |writer| produce(&path, &sha256, &members, compress, strip, writer))
}

/// A stream of what `write` writes, on a thread of its own, through the bounded channel.
fn stream_from(
    write: impl FnOnce(ChannelWriter) -> io::Result<()> + Send + 'static,
) -> MemberStream {
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let errors = sender.clone();
    let spawned = std::thread::Builder::new()
        .name("delta-stream".to_string())
        .spawn(move || {
            let outcome = write(ChannelWriter { sender });
            let _ = errors.blocking_send(outcome.map(|()| Vec::new()));
        });
    let failed = spawned
        .err()
        .map(|error| io::Error::other(format!("cannot start the delta stream's thread: {error}")));
    MemberStream {
        receiver,
        current: Vec::new(),
        offset: 0,
        failed,
        complete: false,
    }
}

/// The delta streams of one run's artifact, each built once (per distinct list of reused files
/// and compression) into an unlinked temporary file, and read by every host that needs it.
/// Memory holds only the keys; the files go away with the shipment that holds this.
#[derive(Default)]
pub struct SharedStreams {
    built: Mutex<HashMap<StreamKey, Arc<OnceCell<Built>>>>,
    /// The decompressed tar the inspection kept (see `inspect_keeping`): streams are built
    /// from it without inflating the artifact again. `None`: from the artifact itself.
    unpacked: Option<Arc<Unpacked>>,
}

type StreamKey = (Arc<Vec<String>>, bool);
/// A built stream (the file and its length), or why it could not be built.
type Built = Result<(Arc<File>, u64), String>;

impl SharedStreams {
    /// Streams built from `unpacked` when there is one (else from the artifact).
    pub fn with_unpacked(unpacked: Option<Arc<Unpacked>>) -> SharedStreams {
        SharedStreams {
            built: Mutex::default(),
            unpacked,
        }
    }

    /// The stream of only the members at `paths` (a repair: each host its own), from the kept
    /// decompressed tar when there is one.
    pub fn only(
        &self,
        path: &Path,
        sha256: &Sha256,
        paths: Arc<Vec<String>>,
        compress: bool,
        strip: usize,
    ) -> MemberStream {
        match &self.unpacked {
            Some(unpacked) => {
                let unpacked = unpacked.clone();
                stream_from(move |writer| {
                    produce_from_unpacked(&unpacked, &Members::Only(paths), compress, strip, writer)
                })
            }
            None => member_stream(path, sha256, Members::Only(paths), compress, strip),
        }
    }

    /// The delta stream that reuses `reused` (see [`Members::Delta`]), built on first use.
    /// Hosts asking for the same stream at once wait for the one build.
    pub async fn delta(
        &self,
        path: &Path,
        sha256: &Sha256,
        reused: Arc<Vec<String>>,
        manifest: Arc<String>,
        compress: bool,
        strip: usize,
    ) -> io::Result<MemberStream> {
        let cell = {
            let mut built = self
                .built
                .lock()
                .map_err(|_| io::Error::other("the delta streams' lock is poisoned"))?;
            built.entry((reused.clone(), compress)).or_default().clone()
        };
        let path = path.to_path_buf();
        let sha256 = sha256.clone();
        let unpacked = self.unpacked.clone();
        let built = cell
            .get_or_init(|| async move {
                let build = tokio::task::spawn_blocking(move || {
                    build_to_file(
                        &path,
                        &sha256,
                        unpacked.as_deref(),
                        &Members::Delta { reused, manifest },
                        compress,
                        strip,
                    )
                    .map_err(|error| error.to_string())
                });
                match build.await {
                    Ok(outcome) => outcome,
                    Err(error) => Err(format!("the delta stream's build stopped: {error}")),
                }
            })
            .await;
        match built {
            Ok((file, length)) => Ok(file_stream(file.clone(), *length)),
            Err(error) => Err(io::Error::other(error.clone())),
        }
    }
}

/// A new temporary file, unlinked at once (it lives as long as its descriptors).
pub fn unlinked_temporary() -> io::Result<File> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let directory = std::env::temp_dir();
    loop {
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = directory.join(format!("deploy-delta-{}-{number}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                std::fs::remove_file(&path).map_err(|error| {
                    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
                })?;
                return Ok(file);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("a temporary file in {}: {error}", directory.display()),
                ));
            }
        }
    }
}

/// Builds the stream of `members` into an unlinked temporary file; returns it and its length.
fn build_to_file(
    path: &Path,
    sha256: &Sha256,
    unpacked: Option<&Unpacked>,
    members: &Members,
    compress: bool,
    strip: usize,
) -> io::Result<(Arc<File>, u64)> {
    let file = Arc::new(unlinked_temporary()?);
    let writer = PositionalWriter {
        file: file.clone(),
        offset: 0,
    };
    match unpacked {
        Some(unpacked) => produce_from_unpacked(unpacked, members, compress, strip, writer)?,
        None => produce(path, sha256, members, compress, strip, writer)?,
    }
    let length = file.metadata()?.len();
    Ok((file, length))
}

/// Writes at increasing offsets of a shared file (its readers each keep their own offset).
struct PositionalWriter {
    file: Arc<File>,
    offset: u64,
}

impl Write for PositionalWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(data, self.offset)?;
        self.offset += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stream of the first `length` bytes of `file`, read on a thread at its own offsets.
fn file_stream(file: Arc<File>, length: u64) -> MemberStream {
    stream_from(move |writer| {
        let mut buffer = vec![0u8; BUFFER_SIZE];
        let mut offset = 0u64;
        let mut writer = writer;
        while offset < length {
            let wanted = (length - offset).min(BUFFER_SIZE as u64) as usize;
            let count = file.read_at(&mut buffer[..wanted], offset)?;
            if count == 0 {
                return Err(io::Error::other(
                    "the built delta stream is shorter than written",
                ));
            }
            writer.write_all(&buffer[..count])?;
            offset += count as u64;
        }
        Ok(())
    })
}

/// Writes the stream; `Err` when the artifact cannot be read or changed since it was checked.
fn produce(
    path: &Path,
    sha256: &Sha256,
    members: &Members,
    compress: bool,
    strip: usize,
    writer: impl Write + 'static,
) -> io::Result<()> {
    let file = File::open(path)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))?;
    // The file is read and hashed on a thread of its own (`HashedSource`).
    let (builder, digest) = std::thread::scope(|scope| {
        let source = HashedSource::start(scope, file);
        let mut archive = tar::Archive::new(GzipMembers::new(source));
        let mut builder = stream_builder(writer, compress);
        write_members(&mut builder, archive.entries()?, members, strip)?;
        let mut rest = archive.into_inner();
        let mut buffer = vec![0u8; BUFFER_SIZE];
        drain_zeros(&mut rest, &mut buffer)?;
        let (digest, _) = rest.finish()?;
        io::Result::Ok((builder, digest))
    })?;
    if digest != **sha256 {
        return Err(io::Error::other(format!(
            "{} changed since it was checked (sha256 {digest}, expected {sha256})",
            path.display()
        )));
    }
    finish_stream(builder)
}

/// Writes the stream from the decompressed tar the inspection kept (nothing to inflate or
/// hash: it is the very bytes the inspection checked; members not sent are skipped by seeking).
fn produce_from_unpacked(
    unpacked: &Unpacked,
    members: &Members,
    compress: bool,
    strip: usize,
    writer: impl Write + 'static,
) -> io::Result<()> {
    let view = FileView {
        file: &unpacked.file,
        offset: 0,
        length: unpacked.length,
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(BUFFER_SIZE, view));
    let mut builder = stream_builder(writer, compress);
    write_members(&mut builder, archive.entries_with_seek()?, members, strip)?;
    finish_stream(builder)
}

/// A tar builder writing into `writer`, through gzip when `compress`.
fn stream_builder(writer: impl Write + 'static, compress: bool) -> tar::Builder<Box<dyn Write>> {
    let sink = BufWriter::with_capacity(BUFFER_SIZE, writer);
    let sink: Box<dyn Write> = if compress {
        Box::new(FinishingGzip(Some(GzEncoder::new(
            sink,
            Compression::fast(),
        ))))
    } else {
        Box::new(sink)
    };
    tar::Builder::new(sink)
}

/// Ends the stream (end-of-archive marker, gzip trailer) and flushes it.
fn finish_stream(builder: tar::Builder<Box<dyn Write>>) -> io::Result<()> {
    let mut sink = builder.into_inner()?;
    sink.flush()?;
    drop(sink);
    Ok(())
}

/// Copies the wanted `entries` of the artifact into the stream, under `tree/` (after the
/// delta's own `reuse` and `manifest` members).
fn write_members<R: Read>(
    builder: &mut tar::Builder<Box<dyn Write>>,
    entries: tar::Entries<'_, R>,
    members: &Members,
    strip: usize,
) -> io::Result<()> {
    let (skipped, only): (HashSet<&str>, Option<HashSet<&str>>) = match members {
        Members::Delta { reused, manifest } => {
            let list: Vec<u8> = reused
                .iter()
                .flat_map(|path| path.bytes().chain(std::iter::once(0)))
                .collect();
            append_file(builder, REUSE_MEMBER, &list)?;
            append_file(builder, MANIFEST_MEMBER, manifest.as_bytes())?;
            (reused.iter().map(String::as_str).collect(), None)
        }
        Members::Only(paths) => (
            HashSet::new(),
            Some(paths.iter().map(String::as_str).collect()),
        ),
    };
    for member in entries {
        let mut member = member?;
        let entry_type = member.header().entry_type();
        let Ok(Some(name)) = release_path(&member.path_bytes(), strip) else {
            // The release root, a top directory `strip` drops (or a member the inspection
            // refused, which cannot get here).
            continue;
        };
        let regular = matches!(entry_type, EntryType::Regular | EntryType::Continuous);
        let wanted = match &only {
            Some(only) => only.contains(name.as_str()),
            None => !(regular && skipped.contains(name.as_str())),
        };
        if !wanted {
            continue;
        }
        let mut header = member.header().clone();
        let staged = PathBuf::from(TREE_MEMBER).join(&name);
        match entry_type {
            EntryType::Symlink => {
                let target = link_target(&member)?;
                builder.append_link(&mut header, &staged, target)?;
            }
            EntryType::Link => {
                let target = link_target(&member)?;
                let target = release_path(target.as_bytes(), strip)
                    .ok()
                    .flatten()
                    .ok_or_else(|| io::Error::other(format!("hardlink `{name}`: bad target")))?;
                builder.append_link(
                    &mut header,
                    &staged,
                    PathBuf::from(TREE_MEMBER).join(target),
                )?;
            }
            EntryType::Directory => {
                header.set_size(0);
                builder.append_data(&mut header, &staged, io::empty())?;
            }
            _ if regular => builder.append_data(&mut header, &staged, &mut member)?,
            // Extension headers are folded into their member by the reader; nothing else
            // passes the inspection.
            _ => {}
        }
    }
    Ok(())
}

/// Reads (and seeks in) the first `length` bytes of a file at its own offset.
struct FileView<'a> {
    file: &'a File,
    offset: u64,
    length: u64,
}

impl Read for FileView<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = self.length.saturating_sub(self.offset);
        let wanted = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        if wanted == 0 {
            return Ok(0);
        }
        let count = self.file.read_at(&mut buffer[..wanted], self.offset)?;
        self.offset += count as u64;
        Ok(count)
    }
}

impl io::Seek for FileView<'_> {
    fn seek(&mut self, position: io::SeekFrom) -> io::Result<u64> {
        let target = match position {
            io::SeekFrom::Start(offset) => Some(offset),
            io::SeekFrom::Current(delta) => self.offset.checked_add_signed(delta),
            io::SeekFrom::End(delta) => self.length.checked_add_signed(delta),
        };
        self.offset =
            target.ok_or_else(|| io::Error::other("a seek before the start of the tar"))?;
        Ok(self.offset)
    }
}

/// A gzip encoder whose `flush` also writes the gzip trailer: the stream's last write, so that
/// a failure to write it is an error of the stream, not lost in a `Drop`.
struct FinishingGzip<W: Write>(Option<GzEncoder<W>>);

impl<W: Write> Write for FinishingGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(encoder) => encoder.write(data),
            None => Err(io::Error::other("the delta stream was already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.take() {
            Some(encoder) => encoder.finish()?.flush(),
            None => Ok(()),
        }
    }
}

/// A regular file of the stream's own (beside `tree/`).
fn append_file(
    builder: &mut tar::Builder<Box<dyn Write>>,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o600);
    header.set_size(data.len() as u64);
    builder.append_data(&mut header, name, data)
}

fn link_target<R: Read>(member: &tar::Entry<'_, R>) -> io::Result<String> {
    let target = member
        .link_name_bytes()
        .ok_or_else(|| io::Error::other("a link member without its target"))?;
    String::from_utf8(target.into_owned())
        .map_err(|_| io::Error::other("a link target that is not UTF-8"))
}

/// The producing thread's end of the channel (blocking).
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Vec<u8>>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.sender
            .blocking_send(Ok(data.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The upload's end: chunks in order; an empty chunk marks a complete stream, and a stream
/// whose thread ended without it is an error, never a silently short upload.
pub struct MemberStream {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    offset: usize,
    failed: Option<io::Error>,
    complete: bool,
}

impl AsyncRead for MemberStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Err(error));
        }
        loop {
            if this.offset < this.current.len() {
                let available = &this.current[this.offset..];
                let count = available.len().min(buffer.remaining());
                buffer.put_slice(&available[..count]);
                this.offset += count;
                return Poll::Ready(Ok(()));
            }
            if this.complete {
                return Poll::Ready(Ok(()));
            }
            match this.receiver.poll_recv(context) {
                Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => this.complete = true,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.current = chunk;
                    this.offset = 0;
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(io::Error::other(
                        "the delta stream ended before it was complete",
                    )));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{MemberPolicy, inspect_with};

    /// A `.tar.gz` of a small tree (a directory, three files, a symlink, a hardlink).
    fn artifact(directory: &Path) -> PathBuf {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        let mut add = |name: &str, entry_type: EntryType, data: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(entry_type);
            header.set_mode(if entry_type == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            header.set_size(data.len() as u64);
            match link {
                Some(target) => builder.append_link(&mut header, name, target),
                None => builder.append_data(&mut header, name, data),
            }
            .expect("append");
        };
        add("./", EntryType::Directory, b"", None);
        add("./bin/", EntryType::Directory, b"", None);
        add("./bin/app", EntryType::Regular, b"app", None);
        add("./same", EntryType::Regular, b"same", None);
        add("./changed", EntryType::Regular, b"changed", None);
        add("./start", EntryType::Symlink, b"", Some("bin/app"));
        add("./bin/app-too", EntryType::Link, b"", Some("./bin/app"));
        let bytes = builder
            .into_inner()
            .and_then(GzEncoder::finish)
            .expect("gzip");
        let path = directory.join("app.tar.gz");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// Every byte of a stream.
    fn read_all(runtime: &tokio::runtime::Runtime, stream: MemberStream) -> io::Result<Vec<u8>> {
        runtime.block_on(async {
            let mut stream = stream;
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut bytes)
                .await
                .map(|_| bytes)
        })
    }

    /// The members of a (gzip-compressed when `compressed`) stream: name, type, content.
    fn members(stream: MemberStream, compressed: bool) -> io::Result<Vec<(String, char, String)>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let bytes = read_all(&runtime, stream)?;
        let reader: Box<dyn Read> = if compressed {
            Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
        } else {
            Box::new(bytes.as_slice())
        };
        let mut archive = tar::Archive::new(reader);
        let mut found = Vec::new();
        for member in archive.entries()? {
            let mut member = member?;
            let name = String::from_utf8_lossy(&member.path_bytes()).into_owned();
            let kind = match member.header().entry_type() {
                EntryType::Directory => 'd',
                EntryType::Symlink => 'l',
                EntryType::Link => 'h',
                _ => 'f',
            };
            let mut content = String::new();
            match member.link_name_bytes() {
                Some(target) => content.push_str(&String::from_utf8_lossy(&target)),
                None => {
                    member.read_to_string(&mut content)?;
                }
            }
            found.push((name, kind, content));
        }
        Ok(found)
    }

    #[test]
    fn a_delta_stream_carries_everything_but_the_reused_files() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = artifact(directory.path());
        let checked = inspect_with(&path, &MemberPolicy::default()).expect("a valid artifact");
        for compress in [true, false] {
            let stream = member_stream(
                &path,
                &checked.sha256,
                Members::Delta {
                    reused: Arc::new(vec!["same".to_string()]),
                    manifest: Arc::new("deploy-manifest 1\n".to_string()),
                },
                compress,
                0,
            );
            let found = members(stream, compress).expect("a tar stream");
            let expected: Vec<(String, char, String)> = [
                ("reuse", 'f', "same\0"),
                ("manifest", 'f', "deploy-manifest 1\n"),
                ("tree/bin", 'd', ""),
                ("tree/bin/app", 'f', "app"),
                ("tree/changed", 'f', "changed"),
                ("tree/start", 'l', "bin/app"),
                ("tree/bin/app-too", 'h', "tree/bin/app"),
            ]
            .iter()
            .map(|(name, kind, content)| (name.to_string(), *kind, content.to_string()))
            .collect();
            assert_eq!(found, expected, "compress: {compress}");
        }
        let stream = member_stream(
            &path,
            &checked.sha256,
            Members::Only(Arc::new(vec!["changed".to_string()])),
            false,
            0,
        );
        assert_eq!(
            members(stream, false).expect("a tar stream"),
            [("tree/changed".to_string(), 'f', "changed".to_string())]
        );
    }

    #[test]
    fn streams_from_the_kept_unpacked_tar_equal_streams_from_the_artifact() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = artifact(directory.path());
        let (checked, unpacked) = crate::artifact::inspect_keeping(
            &path,
            &MemberPolicy::default(),
            Some(unlinked_temporary().expect("a temporary file")),
        )
        .expect("a valid artifact");
        let unpacked = Arc::new(unpacked.expect("the unpacked tar is kept"));
        assert_eq!(
            checked,
            inspect_with(&path, &MemberPolicy::default()).expect("valid")
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let read = |stream: MemberStream| read_all(&runtime, stream);
        let reused = Arc::new(vec!["same".to_string()]);
        let manifest = Arc::new("deploy-manifest 1\n".to_string());
        let kept = SharedStreams::with_unpacked(Some(unpacked));
        for compress in [true, false] {
            let from_artifact = read(member_stream(
                &path,
                &checked.sha256,
                Members::Delta {
                    reused: reused.clone(),
                    manifest: manifest.clone(),
                },
                compress,
                0,
            ))
            .expect("from the artifact");
            let from_copy = read(
                runtime
                    .block_on(kept.delta(
                        &path,
                        &checked.sha256,
                        reused.clone(),
                        manifest.clone(),
                        compress,
                        0,
                    ))
                    .expect("built"),
            )
            .expect("from the copy");
            assert_eq!(from_copy, from_artifact, "compress: {compress}");
        }
        let only = Arc::new(vec!["changed".to_string(), "bin/app".to_string()]);
        let from_artifact = read(member_stream(
            &path,
            &checked.sha256,
            Members::Only(only.clone()),
            false,
            0,
        ))
        .expect("from the artifact");
        // The artifact is gone: the copy is all a repair needs.
        std::fs::remove_file(&path).expect("rm");
        let from_copy =
            read(kept.only(&path, &checked.sha256, only, false, 0)).expect("from the copy");
        assert_eq!(from_copy, from_artifact);
    }

    #[test]
    fn a_copy_over_its_limit_is_dropped() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = artifact(directory.path());
        let file = std::fs::File::open(&path).expect("open");
        let mut copying = super::super::streaming::Copying::new(
            flate2::read::GzDecoder::new(file),
            Some(unlinked_temporary().expect("a temporary file")),
            100,
        );
        let mut all = Vec::new();
        copying.read_to_end(&mut all).expect("read");
        assert!(all.len() > 100);
        let (_, copy) = copying.into_parts();
        assert!(copy.is_none(), "a copy over its limit is not kept");
    }

    #[test]
    fn a_shared_stream_is_built_once_and_read_whole_by_every_host() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = artifact(directory.path());
        let checked = inspect_with(&path, &MemberPolicy::default()).expect("a valid artifact");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let streams = SharedStreams::default();
        let reused = Arc::new(vec!["same".to_string()]);
        let manifest = Arc::new("deploy-manifest 1\n".to_string());
        let read = |stream: MemberStream| read_all(&runtime, stream);
        let own = read(member_stream(
            &path,
            &checked.sha256,
            Members::Delta {
                reused: reused.clone(),
                manifest: manifest.clone(),
            },
            true,
            0,
        ))
        .expect("own stream");
        let first = runtime
            .block_on(streams.delta(
                &path,
                &checked.sha256,
                reused.clone(),
                manifest.clone(),
                true,
                0,
            ))
            .expect("built");
        // The artifact is gone: a second host still gets the stream built for the first.
        std::fs::remove_file(&path).expect("rm");
        let second = runtime
            .block_on(streams.delta(
                &path,
                &checked.sha256,
                reused.clone(),
                manifest.clone(),
                true,
                0,
            ))
            .expect("shared");
        assert_eq!(read(first).expect("first"), own);
        assert_eq!(read(second).expect("second"), own);
        // Another stream (uncompressed) is another build, which now fails: no artifact.
        assert!(
            runtime
                .block_on(streams.delta(&path, &checked.sha256, reused, manifest, false, 0))
                .is_err()
        );
    }

    #[test]
    fn an_artifact_changed_since_its_check_ends_the_stream_with_an_error() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = artifact(directory.path());
        let other = Sha256::parse(&"0".repeat(64)).expect("a sha256");
        let stream = member_stream(&path, &other, Members::Only(Arc::new(Vec::new())), false, 0);
        let error = members(stream, false).expect_err("the digest differs");
        assert!(
            error.to_string().contains("changed since it was checked"),
            "{error}"
        );
        let missing = directory.path().join("gone.tar.gz");
        let stream = member_stream(
            &missing,
            &other,
            Members::Only(Arc::new(Vec::new())),
            false,
            0,
        );
        assert!(members(stream, false).is_err());
    }
}
