//! Files: the programs for `[services.NAME.files]`: reading the sha256 of each file in
//! `<base_dir>/shared` (`digests_script`, parsed by `parse_digests`), and receiving one file's
//! content on stdin (`receive_script`). The content travels only on stdin: never on a command
//! line, so never in a process list, a log line or an error. It is written to a temporary name
//! (mode 0600 while it is written), checked against its sha256, given its mode and renamed over
//! the old one, so a reader sees the old or the new file, never part of one.

use super::layout;
use super::script::{Script, join, quote, script};
use crate::manifest::Sha256;

/// `FILE <index> <sha256>` or `FILE <index> -` (absent) per path, in order.
pub fn digests_script(base_dir: &str, paths: &[String]) -> String {
    let mut body = Script::new();
    for (index, path) in paths.iter().enumerate() {
        body.push(script!(
            "if [ -f {file} ]; then d=$(sha256sum < {file}) || exit 1; printf 'FILE %s %s\\n' {index} \"${{d%% *}}\"; else printf 'FILE %s -\\n' {index}; fi\n",
            file = quote(&join(layout::SHARED, path)),
            index = &index,
        ));
    }
    script!(
        "set -u\nb={base}\n[ -d \"$b\" ] || exit 0\ncd -- \"$b\" || exit 1\n{body}",
        base = quote(base_dir),
        body = &body,
    )
    .into_string()
}

/// What `digests_script` printed: each path's sha256 on the host (`None`: absent).
pub fn parse_digests(stdout: &str, count: usize) -> Result<Vec<Option<Sha256>>, String> {
    let mut digests: Vec<Option<Sha256>> = vec![None; count];
    for (number, line) in stdout.lines().enumerate() {
        let bad = || format!("unexpected host output on line {}: {line:?}", number + 1);
        let mut fields = line.split(' ');
        if fields.next() != Some("FILE") {
            return Err(bad());
        }
        let index: usize = fields
            .next()
            .and_then(|field| field.parse().ok())
            .filter(|index| *index < count)
            .ok_or_else(bad)?;
        let digest = fields.next().ok_or_else(bad)?;
        if fields.next().is_some() {
            return Err(bad());
        }
        digests[index] = match digest {
            "-" => None,
            text => Some(Sha256::parse(text).map_err(|_| bad())?),
        };
    }
    Ok(digests)
}

/// Receives one file on stdin into `shared/<path>` with `mode` (octal permission bits),
/// refusing content whose sha256 is not `sha256`.
pub fn receive_script(base_dir: &str, path: &str, mode: u32, sha256: &Sha256) -> String {
    script!(
        "set -u\numask 077\nb={base}\ncd -- \"$b\" || exit 1\n\
         f={file}\n\
         mkdir -p -- \"$(dirname -- \"$f\")\" || exit 1\n\
         t=\"$f.deploy-upload.$$\"\n\
         trap 'rm -f -- \"$t\"' EXIT\n\
         cat > \"$t\" || exit 1\n\
         d=$(sha256sum < \"$t\") || exit 1\n\
         [ \"${{d%% *}}\" = {sha256} ] || {{ echo \"the content received for $f does not match its sha256\" >&2; exit 1; }}\n\
         chmod {mode} \"$t\" || exit 1\n\
         mv -f -- \"$t\" \"$f\" || exit 1\n",
        base = quote(base_dir),
        file = quote(&join(layout::SHARED, path)),
        sha256 = sha256,
        mode = quote(&format!("{mode:o}")),
    )
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(text: &str) -> Sha256 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        Sha256::parse(
            &digest
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>(),
        )
        .expect("a digest")
    }

    fn sh(script: &str, input: &str, directory: &std::path::Path) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(directory)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writes");
        child.wait_with_output().expect("finishes")
    }

    #[test]
    fn a_file_is_received_checked_and_its_digest_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().expect("tempdir");
        let paths = vec!["config/app.env".to_string(), "other".to_string()];
        let before = sh(&digests_script("app", &paths), "", directory.path());
        assert_eq!(
            parse_digests(&String::from_utf8_lossy(&before.stdout), 2),
            Ok(vec![None, None])
        );
        std::fs::create_dir_all(directory.path().join("app")).expect("mkdir");
        let content = "SECRET=s3cr3t\n";
        let received = sh(
            &receive_script("app", "config/app.env", 0o640, &sha(content)),
            content,
            directory.path(),
        );
        assert!(received.status.success(), "{received:?}");
        let file = directory.path().join("app/shared/config/app.env");
        assert_eq!(std::fs::read_to_string(&file).expect("written"), content);
        assert_eq!(
            std::fs::metadata(&file)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        let after = sh(&digests_script("app", &paths), "", directory.path());
        assert_eq!(
            parse_digests(&String::from_utf8_lossy(&after.stdout), 2),
            Ok(vec![Some(sha(content)), None])
        );
        let refused = sh(
            &receive_script("app", "config/app.env", 0o600, &sha("other")),
            "tampered",
            directory.path(),
        );
        assert!(!refused.status.success());
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), content);
        assert_eq!(
            std::fs::read_dir(file.parent().expect("dir"))
                .expect("list")
                .count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn hostile_digest_output_is_an_error() {
        for bad in [
            "FILE 9 -",
            "FILE 0 zz",
            "junk",
            "FILE 0 - extra",
            "FILE x -",
        ] {
            assert!(parse_digests(bad, 1).is_err(), "{bad}");
        }
    }
}
