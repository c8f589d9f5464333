//! What a host holds, read straight from its directory: the live release, history records,
//! directory listings and whole-tree snapshots; and polling for a state to come about.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sha256_file;

/// How long a polled condition or a background run may take before a test gives up: only
/// keeps a broken build from hanging the suite, never a speed target.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// The file at `path`, as text; panics (naming it) when it cannot be read.
pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.as_ref().display()))
}

/// Sorted entry names of `dir` (empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(read) => read
            .map(|entry| {
                entry
                    .expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The version live in the service directory `app`: the release `current` names
/// (`releases/<v>`), `None` without a `current` link. Panics when `current` names anything
/// else, when it does not lead to a directory, or when the release holds a `version.txt` that
/// says another version (the tests' artifacts carry one).
pub fn live_release(app: &Path) -> Option<String> {
    let target = std::fs::read_link(app.join("current")).ok()?;
    let target = target.display().to_string();
    let version = target
        .strip_prefix("releases/")
        .unwrap_or_else(|| panic!("{}: current -> {target}: not releases/<v>", app.display()))
        .to_string();
    assert!(
        app.join("current").is_dir(),
        "{}: current -> {target} does not lead to a directory",
        app.display()
    );
    if let Ok(text) = std::fs::read_to_string(app.join("current/version.txt")) {
        assert_eq!(
            text,
            version,
            "{}: current -> {target}, whose version.txt says another version",
            app.display()
        );
    }
    Some(version)
}

/// Every record of `<app>/.deploy/history.jsonl`, oldest first (none without the file); each
/// line must be JSON.
pub fn history_records(app: &Path) -> Vec<Value> {
    let path = app.join(".deploy/history.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                panic!(
                    "{} line {} is not JSON ({error}): {line:?}",
                    path.display(),
                    number + 1
                )
            })
        })
        .collect()
}

/// Every path under `root` with its type, link target or content digest: compare two of them
/// to prove a tree is unchanged bit for bit.
pub fn tree_snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    walk(root, root, &mut |relative, path, metadata| {
        let value = if metadata.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(path).expect("link").display())
        } else if metadata.is_dir() {
            "dir".to_string()
        } else {
            format!("file {}", sha256_file(path))
        };
        entries.insert(relative, value);
    });
    entries
}

/// Every path under `root` (relative, and `.` for `root` itself), with its type, mode, size,
/// mtime, link target and content digest: equal snapshots mean nothing under `root` changed,
/// not even a directory's modification time.
pub fn tree_metadata_snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(
        ".".to_string(),
        format!(
            "{:?}",
            std::fs::symlink_metadata(root).map(|m| (m.mode(), m.mtime(), m.mtime_nsec()))
        ),
    );
    walk(root, root, &mut |relative, path, meta| {
        let kind = meta.file_type();
        let detail = if kind.is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(path).expect("readlink").display()
            )
        } else if kind.is_dir() {
            "dir".to_string()
        } else if kind.is_file() {
            format!("file sha256={}", sha256_file(path))
        } else {
            "other".to_string()
        };
        out.insert(
            relative,
            format!(
                "{detail} mode={:o} size={} mtime={}.{}",
                meta.mode(),
                if kind.is_dir() { 0 } else { meta.len() },
                meta.mtime(),
                meta.mtime_nsec()
            ),
        );
    });
    out
}

/// Calls `visit(relative path, path, metadata)` for everything below `dir` (symlinks are not
/// followed); an unreadable directory is skipped.
fn walk(root: &Path, dir: &Path, visit: &mut impl FnMut(String, &Path, &std::fs::Metadata)) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .expect("under root")
            .display()
            .to_string();
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        visit(relative, &path, &metadata);
        if metadata.is_dir() {
            walk(root, &path, visit);
        }
    }
}

/// Polls `condition` until it holds; panics naming `what` after `patience`.
pub fn wait_until(what: &str, patience: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `condition` for up to `within` (clean-up that may finish just after the controller
/// exits); whether it came to hold.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
