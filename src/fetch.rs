//! Controller-side download of URL artifacts (`fetch = "controller"`, SPEC §2; issue 8).
//!
//! This module owns the local artifact cache: `<cache_dir()>/<sha256>.tar.gz`, one file per
//! content digest, written only by renaming a fully downloaded and hashed temporary file
//! (`.<pid>-<nanos>-<n>.part` in the same directory), so a cache entry is always complete and its
//! name is always its content's sha256. Concurrent runs each download into their own temporary
//! file; the last rename wins with identical content.
//!
//! - [`fetch`] / [`fetch_into`]: with an expected sha256 and a cache entry that verifies, return it
//!   without any request (a second run with the same URL and sha256 does not download again);
//!   otherwise download through [`crate::http::get_to_writer`] while hashing, refuse a digest
//!   mismatch (the temporary file is removed, nothing enters the cache), and cache the file under
//!   its actual digest. Without an expected sha256 there is no key to look up: always download.
//! - [`cache_dir`]: `$XDG_CACHE_HOME/deploy/artifacts`, else `~/.cache/deploy/artifacts`.
//!
//! The local artifact checks (gzip/tar integrity, member rules, manifest) are the caller's, on the
//! returned path, exactly as for a local file. Errors name the URL only as `http::redact` shows it.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::http::{self, HttpError};

/// Temporary files older than this were left by a killed run and are removed.
const STALE_PART: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("sha256 {0:?} is not 64 hexadecimal digits")]
    BadDigest(String),
    #[error("artifact cache {}: {source}", path.display())]
    Cache { path: PathBuf, source: io::Error },
    #[error("downloading the artifact: {0}")]
    Http(#[from] HttpError),
    #[error("sha256 mismatch for {url}: expected {expected}, got {actual}")]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
}

/// Where downloaded artifacts are cached: `$XDG_CACHE_HOME/deploy/artifacts` when that variable
/// is an absolute path, else `$HOME/.cache/deploy/artifacts`, else a directory under the system
/// temporary directory.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_dir_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    let absolute = |value: Option<OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute(xdg_cache_home)
        .or_else(|| absolute(home).map(|home| home.join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("deploy-cache"));
    base.join("deploy").join("artifacts")
}

/// [`fetch_into`] the default [`cache_dir`].
pub fn fetch(
    url: &str,
    expected_sha256: Option<&str>,
    timeout: Duration,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, FetchError> {
    fetch_into(&cache_dir(), url, expected_sha256, timeout, progress)
}

/// Return the path of `<cache>/<sha256>.tar.gz` holding the artifact at `url`: from the cache
/// when `expected_sha256` is given and that entry verifies (no request at all), else downloaded
/// (see the module header). `progress(bytes, content_length)` is called during a download only.
/// Blocking: run it inside `spawn_blocking` from async code.
pub fn fetch_into(
    cache: &Path,
    url: &str,
    expected_sha256: Option<&str>,
    timeout: Duration,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, FetchError> {
    let expected = expected_sha256.map(normalize_digest).transpose()?;
    create_cache(cache)?;
    remove_stale_parts(cache);

    if let Some(expected) = &expected {
        let cached = entry(cache, expected);
        if cached.is_file() {
            match sha256_of(&cached) {
                Ok(actual) if &actual == expected => return Ok(cached),
                // Corrupt or truncated by hand: replace it.
                _ => {
                    let _ = fs::remove_file(&cached);
                }
            }
        }
    }

    let mut part = Part::create(cache)?;
    let mut writer = HashingWriter {
        file: &mut part.file,
        hasher: Sha256::new(),
    };
    http::get_to_writer(url, timeout, &mut writer, progress)?;
    let actual = format!("{:x}", writer.hasher.finalize());
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(FetchError::Mismatch {
            url: http::redact(url),
            expected,
            actual,
        });
    }
    let cache_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FetchError::Cache { path, source }
    };
    part.file.sync_all().map_err(cache_error(&part.path))?;
    let target = entry(cache, &actual);
    fs::rename(&part.path, &target).map_err(cache_error(&target))?;
    part.keep();
    Ok(target)
}

fn entry(cache: &Path, sha256: &str) -> PathBuf {
    cache.join(format!("{sha256}.tar.gz"))
}

/// Lower-case hex, exactly 64 digits: the digest becomes a file name, so nothing else passes.
fn normalize_digest(digest: &str) -> Result<String, FetchError> {
    let digest = digest.trim().to_ascii_lowercase();
    match crate::manifest::Sha256::parse(&digest) {
        Ok(digest) => Ok(digest.to_string()),
        Err(_) => Err(FetchError::BadDigest(digest)),
    }
}

fn create_cache(cache: &Path) -> Result<(), FetchError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(cache).map_err(|source| FetchError::Cache {
        path: cache.to_path_buf(),
        source,
    })
}

/// Best effort: `.part` files left by runs that were killed mid-download.
fn remove_stale_parts(cache: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".part")) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_PART);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// A temporary download file in the cache directory, removed on drop unless kept.
struct Part {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl Part {
    fn create(cache: &Path) -> Result<Part, FetchError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = cache.join(format!(".{}-{nanos}-{n}.part", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| FetchError::Cache {
                path: path.clone(),
                source,
            })?;
        Ok(Part {
            path,
            file,
            keep: false,
        })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

struct HashingWriter<'a> {
    file: &'a mut File,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.hasher.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_server::{Reply, TestServer};

    const T: Duration = Duration::from_secs(5);

    fn artifact() -> Vec<u8> {
        (0..200_000u32).map(|i| (i % 253) as u8).collect()
    }

    fn sha(data: &[u8]) -> String {
        format!("{:x}", Sha256::digest(data))
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn serving(data: Vec<u8>) -> TestServer {
        TestServer::start(move |_| Reply::ok(data.clone()))
    }

    #[test]
    fn a_second_fetch_with_the_same_sha256_makes_no_request() {
        let data = artifact();
        let digest = sha(&data);
        let server = serving(data.clone());
        let cache = tempfile::tempdir().unwrap();
        let url = server.url("/myapp.tar.gz?token=abc");
        let mut last = None;
        let path = fetch_into(cache.path(), &url, Some(&digest), T, |done, total| {
            last = Some((done, total))
        })
        .expect("first fetch");
        assert_eq!(path, cache.path().join(format!("{digest}.tar.gz")));
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(last, Some((data.len() as u64, Some(data.len() as u64))));
        assert_eq!(server.count(), 1);

        let again = fetch_into(
            cache.path(),
            &url,
            Some(&digest.to_uppercase()),
            T,
            |_, _| panic!("no progress on a cache hit"),
        )
        .expect("second fetch");
        assert_eq!(again, path);
        assert_eq!(server.count(), 1, "the cache hit made no request");
        assert_eq!(files(cache.path()), vec![format!("{digest}.tar.gz")]);
    }

    #[test]
    fn without_a_sha256_it_always_downloads_and_caches_by_digest() {
        let data = artifact();
        let server = serving(data.clone());
        let cache = tempfile::tempdir().unwrap();
        let url = server.url("/a.tar.gz");
        let first = fetch_into(cache.path(), &url, None, T, |_, _| {}).unwrap();
        let second = fetch_into(cache.path(), &url, None, T, |_, _| {}).unwrap();
        assert_eq!(first, second);
        assert_eq!(first, cache.path().join(format!("{}.tar.gz", sha(&data))));
        assert_eq!(server.count(), 2);
        assert_eq!(files(cache.path()).len(), 1);
    }

    #[test]
    fn a_sha256_mismatch_is_refused_and_leaves_nothing_cached() {
        let data = artifact();
        let server = serving(data.clone());
        let cache = tempfile::tempdir().unwrap();
        let wrong = "ab".repeat(32);
        let url = format!(
            "http://ci:pass@{}/builds/TOPSECRET.tar.gz?token=SECRET",
            server.addr
        );
        let error = fetch_into(cache.path(), &url, Some(&wrong), T, |_, _| {}).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, FetchError::Mismatch { .. }));
        assert!(text.contains(&wrong), "{text}");
        assert!(text.contains(&sha(&data)), "{text}");
        assert!(
            text.contains(&format!("http://{}/…", server.addr)),
            "{text}"
        );
        for secret in ["pass", "SECRET", "builds", "token"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(files(cache.path()).is_empty(), "{:?}", files(cache.path()));
    }

    #[test]
    fn a_corrupt_cache_entry_is_downloaded_again() {
        let data = artifact();
        let digest = sha(&data);
        let server = serving(data.clone());
        let cache = tempfile::tempdir().unwrap();
        fs::write(cache.path().join(format!("{digest}.tar.gz")), b"truncated").unwrap();
        let path =
            fetch_into(cache.path(), &server.url("/a"), Some(&digest), T, |_, _| {}).unwrap();
        assert_eq!(fs::read(path).unwrap(), data);
        assert_eq!(server.count(), 1);
    }

    #[test]
    fn http_errors_leave_no_temporary_file() {
        let server = TestServer::start(|_| Reply::status(404));
        let cache = tempfile::tempdir().unwrap();
        let url = server.url("/missing.tar.gz?token=SECRET");
        let error = fetch_into(cache.path(), &url, None, T, |_, _| {}).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("404"), "{text}");
        assert!(
            !text.contains("SECRET") && !text.contains("missing"),
            "{text}"
        );
        assert!(files(cache.path()).is_empty());
    }

    #[test]
    fn a_hanging_server_fails_within_the_timeout() {
        let server = TestServer::start(|_| Reply::Hang);
        let cache = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let error = fetch_into(
            cache.path(),
            &server.url("/a?token=SECRET"),
            None,
            Duration::from_secs(1),
            |_, _| {},
        )
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(error, FetchError::Http(HttpError::Timeout { .. })),
            "{error}"
        );
        assert!(!error.to_string().contains("SECRET"));
        assert!(files(cache.path()).is_empty());
    }

    #[test]
    fn a_malformed_sha256_is_refused_before_any_request() {
        let server = serving(artifact());
        let cache = tempfile::tempdir().unwrap();
        for bad in ["../../etc/passwd", "abc", &"g".repeat(64), &"a".repeat(65)] {
            let error = fetch_into(cache.path(), &server.url("/a"), Some(bad), T, |_, _| {});
            assert!(matches!(error, Err(FetchError::BadDigest(_))), "{bad}");
        }
        assert_eq!(server.count(), 0);
    }

    #[test]
    fn stale_temporary_files_are_swept() {
        let server = serving(artifact());
        let cache = tempfile::tempdir().unwrap();
        let stale = cache.path().join(".1-2-3.part");
        let fresh = cache.path().join(".4-5-6.part");
        fs::write(&stale, b"x").unwrap();
        fs::write(&fresh, b"x").unwrap();
        let old = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        fetch_into(cache.path(), &server.url("/a"), None, T, |_, _| {}).unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists(), "a concurrent run's download is left alone");
    }

    #[test]
    fn cache_dir_follows_xdg_then_home() {
        assert_eq!(
            cache_dir_from(Some("/xdg".into()), Some("/home/u".into())),
            PathBuf::from("/xdg/deploy/artifacts")
        );
        assert_eq!(
            cache_dir_from(Some("relative".into()), Some("/home/u".into())),
            PathBuf::from("/home/u/.cache/deploy/artifacts")
        );
        assert_eq!(
            cache_dir_from(None, Some("/home/u".into())),
            PathBuf::from("/home/u/.cache/deploy/artifacts")
        );
        assert!(cache_dir_from(None, None).ends_with("deploy/artifacts"));
        assert!(cache_dir().ends_with("deploy/artifacts"));
    }
}
