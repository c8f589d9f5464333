//! Release tarballs for the tests, built with the system `tar`, and their digests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `<dir>/<name>.tar.gz` from `files` (path, content) with the system tar.
pub fn tarball(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let source = dir.join(format!("{name}.src"));
    let _ = std::fs::remove_dir_all(&source);
    for (path, content) in files {
        let file = source.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, content).expect("write file");
    }
    let archive = dir.join(format!("{name}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&source)
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar failed");
    archive
}

/// `<dir>/<name>.tar.gz` holding `index.html` (= `name`) and `blob.bin`: `megabytes` MiB from
/// /dev/urandom (incompressible), gzipped fast.
pub fn big_tarball(dir: &Path, name: &str, megabytes: usize) -> PathBuf {
    let source = dir.join(format!("{name}.src"));
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(source.join("index.html"), name).expect("write index");
    let mut random = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
    let mut blob = std::fs::File::create(source.join("blob.bin")).expect("create blob");
    let mut buffer = vec![0u8; 1 << 20];
    for _ in 0..megabytes {
        std::io::Read::read_exact(&mut random, &mut buffer).expect("read urandom");
        std::io::Write::write_all(&mut blob, &buffer).expect("write blob");
    }
    drop(blob);
    let archive = dir.join(format!("{name}.tar.gz"));
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -cf - -C \"$1\" . | gzip -1 > \"$2\"")
        .arg("sh")
        .arg(&source)
        .arg(&archive)
        .status()
        .expect("sh runs");
    assert!(status.success(), "tar | gzip failed");
    std::fs::remove_dir_all(&source).expect("remove the source tree");
    archive
}

/// (path, content) of a release of `count` small files in 30 directories.
pub fn many_files(version: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("d{:02}/f{i:04}.txt", i % 30),
                format!("{version} {i}\n"),
            )
        })
        .collect()
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The lowercase hex sha256 of the file at `path`.
pub fn sha256_file(path: &Path) -> String {
    let bytes =
        std::fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    sha256_hex(&bytes)
}
