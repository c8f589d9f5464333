//! The readers under the tar parser: the hashing reader (sha256 and byte count of the raw
//! `.tar.gz`, hashed on a thread of its own), the gzip member chain (inflated on another thread,
//! ahead of the parser: [`ReadAhead`]), and the budget that bounds what the tar parser may read
//! outside file data.
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

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::mem;
use std::path::Path;
use std::rc::Rc;

use flate2::bufread::GzDecoder;
use sha2::{Digest, Sha256};

use super::error::ArtifactError;

/// Size of every buffer used while streaming the artifact.
pub(super) const BUFFER_SIZE: usize = 64 * 1024;

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Most bytes the tar parser may read for one member outside its file data: header blocks plus
/// GNU long-name and PAX records, which the tar crate holds in memory while parsing them. Without
/// a bound, a small artifact could decompress into a huge extension record and exhaust memory.
pub(super) const HEADER_BUDGET: u64 = 1024 * 1024;

/// sha256 of a byte stream, computed on a thread of its own so that the digest of the whole
/// file costs no time on the decompressing path (two cores: hashing and inflating overlap).
/// Chunks travel through a bounded channel: memory stays constant. Their buffers go back to the
/// reader through a second channel and are reused: a fresh 64 KiB buffer per chunk is mapped
/// and unmapped by the allocator each time (see `allocator`), page faults and TLB shootdowns
/// that cost more than the hashing. If no thread can be started, it hashes in place.
struct BackgroundHasher {
    sender: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<Sha256>>,
    in_place: Option<Box<Sha256>>,
}

/// Chunks in flight to the hashing thread (and buffers in circulation, plus one).
const HASHER_CHUNKS: usize = 8;

impl BackgroundHasher {
    fn new() -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASHER_CHUNKS);
        let (returns, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASHER_CHUNKS + 1);
        let spawned = std::thread::Builder::new()
            .name("artifact-sha256".to_string())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for chunk in receiver {
                    hasher.update(&chunk);
                    // A full return channel (never, by its size) only drops the buffer.
                    let _ = returns.try_send(chunk);
                }
                hasher
            });
        match spawned {
            Ok(worker) => BackgroundHasher {
                sender: Some(sender),
                spare: Some(spare),
                worker: Some(worker),
                in_place: None,
            },
            Err(_) => BackgroundHasher {
                sender: None,
                spare: None,
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
        let mut chunk = self
            .spare
            .as_ref()
            .and_then(|spare| spare.try_recv().ok())
            .unwrap_or_default();
        chunk.clear();
        chunk.extend_from_slice(data);
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|sender| sender.send(chunk).is_ok());
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
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: BackgroundHasher,
    bytes: u64,
    failure: Option<io::Error>,
}

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R) -> Self {
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

pub(super) type Source<R> = BufReader<HashingReader<R>>;

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
pub(super) struct GzipMembers<R> {
    stage: Stage<R>,
    failed: bool,
}

impl<R: Read> GzipMembers<R> {
    pub(super) fn new(source: Source<R>) -> Self {
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
    pub(super) fn classify(&mut self, error: io::Error, name: &Path) -> ArtifactError {
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
    pub(super) fn finish(self) -> io::Result<(String, u64)> {
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

/// Chunks decompressed ahead of the tar parser (and buffers in circulation, plus one).
const AHEAD_CHUNKS: usize = 8;

/// Decompresses on a thread of its own, ahead of the reader: inflating is the longest part of
/// the inspection, and the tar parser's work (the members' sha256, the unpacked copy) then runs
/// beside it on the second core instead of after it. Chunks travel through a bounded channel
/// (memory stays constant) and their buffers come back to be reused, as with
/// [`BackgroundHasher`]. A read error reaches the reader when it gets there, and every read
/// after it fails too; [`Self::into_inner`] gives the decompressor back (to classify the error,
/// or take the digest). If no thread can be started, it reads in place.
pub(super) struct ReadAhead<'scope, R> {
    chunks: Option<std::sync::mpsc::Receiver<io::Result<Vec<u8>>>>,
    spare: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::ScopedJoinHandle<'scope, Option<R>>>,
    in_place: Option<R>,
    current: Vec<u8>,
    position: usize,
    ended: bool,
    failed: bool,
}

impl<'scope, R: Read + Send + 'scope> ReadAhead<'scope, R> {
    /// Starts reading `inner` ahead on a thread of `scope`.
    pub(super) fn start<'environment>(
        scope: &'scope std::thread::Scope<'scope, 'environment>,
        inner: R,
    ) -> Self {
        let (sender, chunks) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(AHEAD_CHUNKS);
        let (spare, returned) = std::sync::mpsc::sync_channel::<Vec<u8>>(AHEAD_CHUNKS + 1);
        // The reader reaches the thread through a slot, to be taken back if the thread cannot
        // be started (a failed spawn drops its closure).
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(inner)));
        let handed = std::sync::Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("artifact-inflate".to_string())
            .spawn_scoped(scope, move || {
                let mut inner = take(&handed);
                let reader = inner.as_mut()?;
                loop {
                    let mut chunk = returned.try_recv().unwrap_or_default();
                    chunk.resize(BUFFER_SIZE, 0);
                    let message = match reader.read(&mut chunk) {
                        Ok(count) => {
                            chunk.truncate(count);
                            Ok(chunk)
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) => Err(error),
                    };
                    // The end of the stream is an empty chunk; after an error, nothing more.
                    let last = !matches!(&message, Ok(chunk) if !chunk.is_empty());
                    // A send fails only when the reader is gone: nobody wants more.
                    if sender.send(message).is_err() || last {
                        break;
                    }
                }
                inner
            });
        let (chunks, spare, worker, in_place) = match spawned {
            Ok(worker) => (Some(chunks), Some(spare), Some(worker), None),
            Err(_) => (None, None, None, take(&slot)),
        };
        ReadAhead {
            chunks,
            spare,
            worker,
            in_place,
            current: Vec::new(),
            position: 0,
            ended: false,
            failed: false,
        }
    }

    /// Stops the thread (it is waiting to hand over a chunk, or has ended) and gives the
    /// decompressor back.
    pub(super) fn into_inner(self) -> io::Result<R> {
        let ReadAhead {
            chunks,
            worker,
            in_place,
            ..
        } = self;
        if let Some(inner) = in_place {
            return Ok(inner);
        }
        drop(chunks);
        match worker.map(std::thread::ScopedJoinHandle::join) {
            Some(Ok(Some(inner))) => Ok(inner),
            _ => Err(io::Error::other("the decompressing thread stopped")),
        }
    }
}

/// What a mutex-guarded slot holds, taken out (a poisoned lock still gives it).
fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

impl<R: Read> Read for ReadAhead<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if let Some(inner) = &mut self.in_place {
            return inner.read(buffer);
        }
        if self.failed {
            return Err(io::Error::other("the decompressed stream already failed"));
        }
        if buffer.is_empty() {
            return Ok(0);
        }
        while self.position >= self.current.len() {
            if self.ended {
                return Ok(0);
            }
            let used = mem::take(&mut self.current);
            if let Some(spare) = &self.spare {
                // A full return channel (never, by its size) only drops the buffer.
                let _ = spare.try_send(used);
            }
            self.position = 0;
            let received = match &self.chunks {
                Some(chunks) => chunks.recv().ok(),
                None => None,
            };
            match received {
                Some(Ok(chunk)) => {
                    self.ended = chunk.is_empty();
                    self.current = chunk;
                }
                Some(Err(error)) => {
                    self.failed = true;
                    return Err(error);
                }
                None => {
                    self.failed = true;
                    return Err(io::Error::other("the decompressing thread stopped"));
                }
            }
        }
        let available = self.current.get(self.position..).unwrap_or_default();
        let count = available.len().min(buffer.len());
        if let (Some(target), Some(source)) = (buffer.get_mut(..count), available.get(..count)) {
            target.copy_from_slice(source);
        }
        self.position += count;
        Ok(count)
    }
}

/// The decompressed tar of an artifact, kept by its inspection in an unlinked temporary file
/// (see [`Copying`]): delta streams are then built from it without inflating the artifact again.
pub struct Unpacked {
    pub(super) file: std::fs::File,
    pub(super) length: u64,
}

/// Passes the decompressed stream through to the tar parser while copying it into a file, up to
/// `limit` bytes. The copy is dropped (never an error of the inspection) when it would exceed
/// the limit or a write fails (a full disk): whoever needs the tar later inflates the artifact
/// again.
pub(super) struct Copying<R> {
    pub(super) inner: R,
    copy: Option<(io::BufWriter<std::fs::File>, u64)>,
    limit: u64,
}

impl<R: Read> Copying<R> {
    pub(super) fn new(inner: R, file: Option<std::fs::File>, limit: u64) -> Self {
        Copying {
            inner,
            copy: file.map(|file| (io::BufWriter::with_capacity(4 * BUFFER_SIZE, file), 0)),
            limit,
        }
    }

    /// The reader, and the copy of everything read through it (if it was kept whole).
    pub(super) fn into_parts(self) -> (R, Option<Unpacked>) {
        let copy = self.copy.and_then(|(writer, length)| {
            let file = writer.into_inner().ok()?;
            Some(Unpacked { file, length })
        });
        (self.inner, copy)
    }
}

impl<R: Read> Read for Copying<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        if let Some((writer, length)) = &mut self.copy {
            let read = buffer.get(..count).unwrap_or_default();
            let fits = *length + read.len() as u64 <= self.limit;
            if fits && io::Write::write_all(writer, read).is_ok() {
                *length += read.len() as u64;
            } else {
                tracing::debug!(
                    "the unpacked copy of the artifact is not kept (over the limit, or a write failed)"
                );
                self.copy = None;
            }
        }
        Ok(count)
    }
}

/// Caps how much the tar parser reads between resets of `remaining` (see [`HEADER_BUDGET`]).
pub(super) struct Budgeted<R> {
    pub(super) inner: R,
    pub(super) remaining: Rc<Cell<u64>>,
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
pub(super) fn drain_zeros(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
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

pub(super) fn check_gzip_magic<R: Read>(
    source: &mut Source<R>,
    name: &Path,
) -> Result<(), ArtifactError> {
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
// Small helpers (also used by the member rules)
// ---------------------------------------------------------------------------------------------

/// An I/O error's message with the messages of its causes, which the tar crate keeps apart.
pub(super) fn describe(error: &io::Error) -> String {
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

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}
