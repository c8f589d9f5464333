//! The readers under the tar parser: the hashed source (the raw `.tar.gz` read ahead and hashed
//! on a thread of its own: [`HashedSource`]), the gzip member chain (inflated on another thread,
//! ahead of the parser: [`ReadAhead`]), and the budget that bounds what the tar parser may read
//! outside file data.
//!
//! # Stream layout and end-of-stream policy
//!
//! The file is read in 64 KiB chunks by the hashed source (sha256 and byte count of the raw
//! `.tar.gz`), which the gzip decoder reads in place; the tar parser reads what it inflates. Gzip members are decoded one after the
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
use std::io::{self, BufRead, Read};
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

/// The raw `.tar.gz` as the gzip decoder reads it, with the sha256 and byte count of everything
/// read. A [`ReadAhead`] thread reads the file in chunks and hashes each before handing it over:
/// the read system calls, the copy out of the page cache and the digest of the whole file then
/// cost nothing on the inflating thread, the longest of the inspection. The decoder reads the
/// chunks in place (`BufRead`, no copy). The first read error is kept (`failure`) so that it can
/// be told apart from decoding errors; every read after it fails too.
pub(super) struct HashedSource<'scope, R> {
    ahead: ReadAhead<'scope, R, FileDigest>,
    /// The first read error of the file itself.
    pub(super) failure: Option<io::Error>,
}

/// sha256 and byte count of the chunks that went through a [`ReadAhead`].
#[derive(Default)]
pub(super) struct FileDigest {
    hasher: Sha256,
    bytes: u64,
}

impl Tap for FileDigest {
    fn take_in(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
    }
}

impl<'scope, R: Read + Send + 'scope> HashedSource<'scope, R> {
    /// Starts reading `inner` ahead on a thread of `scope`.
    pub(super) fn start<'environment>(
        scope: &'scope std::thread::Scope<'scope, 'environment>,
        inner: R,
    ) -> Self {
        HashedSource {
            ahead: ReadAhead::start(scope, "artifact-read", inner, FileDigest::default()),
            failure: None,
        }
    }
}

impl<R: Read> HashedSource<'_, R> {
    /// sha256 (hex) and byte count of the whole file; an error unless it was read to its end.
    fn finish(self) -> io::Result<(String, u64)> {
        if !self.ahead.ended() {
            return Err(io::Error::other("the artifact was not read to its end"));
        }
        let (_, digest) = self.ahead.into_parts()?;
        Ok((hex(&digest.hasher.finalize()), digest.bytes))
    }
}

impl<R: Read> BufRead for HashedSource<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Err(error) = self.ahead.fill() {
            // Keeps the first read error (for `GzipMembers::classify`) and returns a copy.
            let copy = io::Error::new(error.kind(), error.to_string());
            if self.failure.is_none() {
                self.failure = Some(error);
            }
            return Err(copy);
        }
        Ok(self.ahead.buffered())
    }

    fn consume(&mut self, amount: usize) {
        self.ahead.consume(amount);
    }
}

impl<R: Read> Read for HashedSource<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, buffer)
    }
}

enum Stage<'scope, R> {
    /// Decoding a gzip member.
    Member(Box<GzDecoder<HashedSource<'scope, R>>>),
    /// The last member and any zero padding after it have been read.
    Finished(Box<HashedSource<'scope, R>>),
    /// Only seen if a transition between the two was interrupted; never in practice.
    Broken,
}

/// Decompresses consecutive gzip members as one stream (see the module documentation for what
/// may follow the last member).
pub(super) struct GzipMembers<'scope, R> {
    stage: Stage<'scope, R>,
    failed: bool,
}

impl<'scope, R: Read> GzipMembers<'scope, R> {
    pub(super) fn new(source: HashedSource<'scope, R>) -> Self {
        GzipMembers {
            stage: Stage::Member(Box::new(GzDecoder::new(source))),
            failed: false,
        }
    }

    fn source_mut(&mut self) -> Option<&mut HashedSource<'scope, R>> {
        match &mut self.stage {
            Stage::Member(decoder) => Some(decoder.get_mut()),
            Stage::Finished(source) => Some(&mut **source),
            Stage::Broken => None,
        }
    }

    /// Turns an error met while streaming into the matching [`ArtifactError`].
    pub(super) fn classify(&mut self, error: io::Error, name: &Path) -> ArtifactError {
        let read_failure = self.source_mut().and_then(|source| source.failure.take());
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
            Stage::Member(decoder) => (*decoder).into_inner().finish(),
            Stage::Finished(source) => (*source).finish(),
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
                self.stage = Stage::Finished(Box::new(source));
                return Err(error);
            }
        };
        match next {
            None => {
                self.stage = Stage::Finished(Box::new(source));
                Ok(())
            }
            Some(byte) if byte == GZIP_MAGIC[0] => {
                self.stage = Stage::Member(Box::new(GzDecoder::new(source)));
                Ok(())
            }
            Some(0) => {
                let only_zeros = skip_zeros(&mut source);
                self.stage = Stage::Finished(Box::new(source));
                match only_zeros {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(trailing_garbage()),
                    Err(error) => Err(error),
                }
            }
            Some(_) => {
                self.stage = Stage::Finished(Box::new(source));
                Err(trailing_garbage())
            }
        }
    }
}

impl<R: Read> Read for GzipMembers<'_, R> {
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

/// Chunks read ahead (and buffers in circulation, plus one).
const AHEAD_CHUNKS: usize = 8;

/// What a [`ReadAhead`] thread does with each chunk before handing it over.
pub(super) trait Tap: Send {
    fn take_in(&mut self, chunk: &[u8]);
}

/// Nothing: the chunks are only handed over.
impl Tap for () {
    fn take_in(&mut self, _chunk: &[u8]) {}
}

/// Reads `inner` on a thread of its own, ahead of the reader, passing every chunk through a
/// [`Tap`] first. Used twice by the inspection: the file is read and hashed on one thread
/// ([`HashedSource`]), inflated on another (the tar parser's work, the members' sha256 and the
/// unpacked copy, runs beside them on the caller's thread instead of after them). Chunks travel
/// through a bounded channel (memory stays constant) and their buffers come back to be reused:
/// a fresh 64 KiB buffer per chunk is mapped and unmapped by the allocator each time (see
/// `allocator`), page faults and TLB shootdowns that cost more than the work. The reader reads
/// the chunks in place (`BufRead`). A read error reaches the reader after the chunks read before
/// it, and every read after it fails too; [`Self::into_parts`] gives the inner reader and the tap
/// back (to classify an error, or take a digest). If no thread can be started, it reads and taps
/// in place.
pub(super) struct ReadAhead<'scope, R, T = ()> {
    feed: Feed<'scope, R, T>,
    current: Vec<u8>,
    position: usize,
    ended: bool,
    failed: bool,
}

/// Where a [`ReadAhead`]'s chunks come from.
enum Feed<'scope, R, T> {
    /// A thread reads ahead; used buffers go back to it through `spare`.
    Ahead {
        chunks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
        spare: std::sync::mpsc::SyncSender<Vec<u8>>,
        worker: std::thread::ScopedJoinHandle<'scope, Option<(R, T)>>,
    },
    /// No thread could be started: read on the caller's (`None` only if the reader was lost).
    InPlace(Option<(R, T)>),
}

impl<'scope, R: Read + Send + 'scope, T: Tap + 'scope> ReadAhead<'scope, R, T> {
    /// Starts reading `inner` ahead on a thread of `scope` named `name`.
    pub(super) fn start<'environment>(
        scope: &'scope std::thread::Scope<'scope, 'environment>,
        name: &str,
        inner: R,
        tap: T,
    ) -> Self {
        let (sender, chunks) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(AHEAD_CHUNKS);
        let (spare, returned) = std::sync::mpsc::sync_channel::<Vec<u8>>(AHEAD_CHUNKS + 1);
        // The reader reaches the thread through a slot, to be taken back if the thread cannot
        // be started (a failed spawn drops its closure).
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some((inner, tap))));
        let handed = std::sync::Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn_scoped(scope, move || {
                let (mut reader, mut tap) = take(&handed)?;
                loop {
                    let mut chunk = returned.try_recv().unwrap_or_default();
                    let message = read_chunk(&mut reader, &mut tap, &mut chunk).map(|()| chunk);
                    // The end of the stream is an empty chunk; after an error, nothing more.
                    let last = !matches!(&message, Ok(chunk) if !chunk.is_empty());
                    // A send fails only when the reader is gone: nobody wants more.
                    if sender.send(message).is_err() || last {
                        break;
                    }
                }
                Some((reader, tap))
            });
        ReadAhead::fed_by(match spawned {
            Ok(worker) => Feed::Ahead {
                chunks,
                spare,
                worker,
            },
            Err(_) => Feed::InPlace(take(&slot)),
        })
    }

    /// Nothing read yet, from `feed`.
    fn fed_by(feed: Feed<'scope, R, T>) -> Self {
        ReadAhead {
            feed,
            current: Vec::new(),
            position: 0,
            ended: false,
            failed: false,
        }
    }
}

impl<R: Read, T: Tap> ReadAhead<'_, R, T> {
    /// Stops the thread (it is waiting to hand over a chunk, or has ended) and gives the inner
    /// reader back.
    pub(super) fn into_inner(self) -> io::Result<R> {
        self.into_parts().map(|(inner, _)| inner)
    }

    /// Stops the thread and gives the inner reader and the tap back.
    fn into_parts(self) -> io::Result<(R, T)> {
        let parts = match self.feed {
            Feed::InPlace(parts) => parts,
            Feed::Ahead { chunks, worker, .. } => {
                drop(chunks);
                worker.join().ok().flatten()
            }
        };
        parts.ok_or_else(|| io::Error::other("a reading thread of the artifact stopped"))
    }

    /// Whether the end of the stream was reached.
    fn ended(&self) -> bool {
        self.ended
    }

    /// Makes sure unread bytes are buffered, unless the stream has ended.
    fn fill(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("reading the artifact already failed"));
        }
        while self.position >= self.current.len() && !self.ended {
            let mut used = mem::take(&mut self.current);
            self.position = 0;
            let next = match &mut self.feed {
                Feed::Ahead { chunks, spare, .. } => {
                    // A full return channel (never, by its size) only drops the buffer.
                    let _ = spare.try_send(used);
                    chunks.recv().unwrap_or_else(|_| {
                        Err(io::Error::other("a reading thread of the artifact stopped"))
                    })
                }
                Feed::InPlace(Some((inner, tap))) => {
                    read_chunk(inner, tap, &mut used).map(|()| used)
                }
                Feed::InPlace(None) => Err(io::Error::other("the artifact's reader is gone")),
            };
            match next {
                Ok(chunk) => {
                    self.ended = chunk.is_empty();
                    self.current = chunk;
                }
                Err(error) => {
                    self.failed = true;
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// The bytes buffered and not yet consumed.
    fn buffered(&self) -> &[u8] {
        self.current.get(self.position..).unwrap_or_default()
    }
}

/// Reads the next chunk of `reader` into `chunk` (empty at the end) and passes it through `tap`.
fn read_chunk<R: Read, T: Tap>(reader: &mut R, tap: &mut T, chunk: &mut Vec<u8>) -> io::Result<()> {
    chunk.resize(BUFFER_SIZE, 0);
    loop {
        match reader.read(chunk) {
            Ok(count) => {
                chunk.truncate(count);
                tap.take_in(chunk);
                return Ok(());
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
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

impl<R: Read, T: Tap> BufRead for ReadAhead<'_, R, T> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.fill()?;
        Ok(self.buffered())
    }

    fn consume(&mut self, amount: usize) {
        self.position = self.position.saturating_add(amount).min(self.current.len());
    }
}

impl<R: Read, T: Tap> Read for ReadAhead<'_, R, T> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, buffer)
    }
}

/// `Read::read` of a `BufRead`: copies what is buffered (filling it first if need be).
fn read_buffered(source: &mut impl BufRead, buffer: &mut [u8]) -> io::Result<usize> {
    if buffer.is_empty() {
        return Ok(0);
    }
    let available = source.fill_buf()?;
    let count = available.len().min(buffer.len());
    if let (Some(target), Some(origin)) = (buffer.get_mut(..count), available.get(..count)) {
        target.copy_from_slice(origin);
    }
    source.consume(count);
    Ok(count)
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
    source: &mut HashedSource<'_, R>,
    name: &Path,
) -> Result<(), ArtifactError> {
    let head = match source.fill_buf() {
        Ok(head) => head,
        Err(error) => {
            let io = source.failure.take().unwrap_or(error);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes in pieces of awkward sizes, then fails (or ends) as told.
    struct Pieces {
        data: Vec<u8>,
        position: usize,
        fail_at_end: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            if self.position >= self.data.len() && self.fail_at_end {
                return Err(io::Error::other("disk on fire"));
            }
            let count = buffer.len().min(self.data.len() - self.position).min(7919);
            buffer[..count].copy_from_slice(&self.data[self.position..self.position + count]);
            self.position += count;
            Ok(count)
        }
    }

    fn pieces(length: usize, fail_at_end: bool) -> Pieces {
        Pieces {
            data: (0..length).map(|index| (index % 251) as u8).collect(),
            position: 0,
            fail_at_end,
        }
    }

    #[test]
    fn the_hashed_source_passes_every_byte_and_hashes_the_whole_file() {
        let length = 5 * BUFFER_SIZE + 12345;
        let expected = pieces(length, false).data;
        std::thread::scope(|scope| {
            let mut source = HashedSource::start(scope, pieces(length, false));
            let mut seen = Vec::new();
            source.read_to_end(&mut seen).unwrap();
            assert_eq!(seen, expected);
            let (digest, count) = source.finish().unwrap();
            assert_eq!(digest, hex(&Sha256::digest(&expected)));
            assert_eq!(count, length as u64);
        });
    }

    #[test]
    fn the_hashed_source_keeps_a_read_error_after_the_bytes_before_it() {
        let length = 3 * BUFFER_SIZE;
        std::thread::scope(|scope| {
            let mut source = HashedSource::start(scope, pieces(length, true));
            let mut seen = Vec::new();
            let error = source.read_to_end(&mut seen).unwrap_err();
            assert!(error.to_string().contains("disk on fire"), "{error}");
            assert_eq!(
                seen.len(),
                length,
                "every byte read before the error arrives first"
            );
            let kept = source.failure.take().expect("the read error is kept");
            assert!(kept.to_string().contains("disk on fire"), "{kept}");
            assert!(source.fill_buf().is_err(), "reads after the error fail too");
            assert!(
                source.finish().is_err(),
                "no digest of a file not read to its end"
            );
        });
    }

    /// What `start` falls back to when no thread can be started: the same bytes, tapped, and a
    /// read error after the bytes before it.
    #[test]
    fn reading_in_place_passes_every_byte_through_the_tap_and_keeps_errors() {
        let length = 3 * BUFFER_SIZE + 777;
        let expected = pieces(length, false).data;
        let mut ahead = ReadAhead::fed_by(Feed::InPlace(Some((
            pieces(length, false),
            FileDigest::default(),
        ))));
        let mut seen = Vec::new();
        ahead.read_to_end(&mut seen).unwrap();
        assert_eq!(seen, expected);
        assert!(ahead.ended());
        let (_, digest) = ahead.into_parts().unwrap();
        assert_eq!(
            hex(&digest.hasher.finalize()),
            hex(&Sha256::digest(&expected))
        );
        assert_eq!(digest.bytes, length as u64);

        let mut failing = ReadAhead::fed_by(Feed::InPlace(Some((pieces(length, true), ()))));
        let mut seen = Vec::new();
        let error = failing.read_to_end(&mut seen).unwrap_err();
        assert!(error.to_string().contains("disk on fire"), "{error}");
        assert_eq!(
            seen.len(),
            length,
            "every byte before the error arrives first"
        );
        assert!(
            failing.fill_buf().is_err(),
            "reads after the error fail too"
        );
        assert!(!failing.ended());

        let mut lost: ReadAhead<'_, Pieces> = ReadAhead::fed_by(Feed::InPlace(None));
        assert!(
            lost.fill_buf().is_err(),
            "a lost reader is an error, not an end"
        );
        assert!(lost.into_inner().is_err());
    }

    #[test]
    fn a_digest_needs_the_whole_file_and_a_dropped_source_stops_its_thread() {
        let length = 40 * BUFFER_SIZE;
        std::thread::scope(|scope| {
            let mut source = HashedSource::start(scope, pieces(length, false));
            let first = source.fill_buf().unwrap().len();
            source.consume(first);
            assert!(source.finish().is_err());
            // Dropping a source whose thread waits to hand over more chunks must let the scope
            // end: a hang here is the failure.
            let mut dropped = HashedSource::start(scope, pieces(length, false));
            assert!(!dropped.fill_buf().unwrap().is_empty());
        });
    }
}
