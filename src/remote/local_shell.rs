//! Tests only: runs a remote program with this machine's `sh`, in a directory that stands in
//! for the host's login directory, so each program's unit tests read the output its parser gets.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `sh -c script` in `directory`, stdin closed; the whole output, whatever the exit status.
pub fn run(directory: &Path, script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(directory)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

/// [`run`], which must succeed; its stdout.
pub fn stdout_of(directory: &Path, script: &str) -> Vec<u8> {
    let output = run(directory, script);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
