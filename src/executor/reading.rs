//! Reading: the artifact file as an upload's source, read on the task that uploads it.
//!
//! `tokio::fs::File` hands every read to the blocking pool: a thread hand-off and a wake-up
//! per chunk, which on a full push of 200 MB to 8 hosts cost more controller CPU than the
//! encryption. The artifact was read whole by the check moments before any upload starts, so
//! its pages are in the page cache and a read is a copy of a few microseconds: it is done in
//! place. (Were the file evicted meanwhile, a read would wait on the disk for as long as the
//! blocking pool would have.)

use std::fs::File;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The artifact, read in place (see the module documentation).
pub struct ArtifactFile(File);

impl ArtifactFile {
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        File::open(path).map(ArtifactFile)
    }
}

impl AsyncRead for ArtifactFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buffer.initialize_unfilled();
        loop {
            match self.0.read(unfilled) {
                Ok(count) => {
                    buffer.advance(count);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_the_whole_file_in_chunks() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("a.tar.gz");
        let content: Vec<u8> = (0..100_000u32).map(|index| (index % 251) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let mut file = ArtifactFile::open(&path).expect("open");
        let mut read = Vec::new();
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            let count = file.read(&mut chunk).await.expect("read");
            if count == 0 {
                break;
            }
            read.extend_from_slice(&chunk[..count]);
        }
        assert_eq!(read, content);
        assert!(ArtifactFile::open(&directory.path().join("missing")).is_err());
    }
}
