//! Probe: `deploy check`'s program, which looks for the remote prerequisites (SPEC §3, plus
//! what the other programs use) and whether each service's `base_dir` is, or can be made,
//! writable, changing nothing (a scratch directory under $TMPDIR is created and removed to
//! prove `mv -T` renames a symlink over another); and the strict parser of its output.

use super::script::{Script, quote, script};

/// Commands every host needs (SPEC §3, plus what the lowered scripts use).
const TOOLS: &[&str] = &[
    "sh",
    "tar",
    "gzip",
    "mkdir",
    "mv",
    "ln",
    "sha256sum",
    "tee",
    "readlink",
    "df",
    "cat",
    "rm",
    "dirname",
    "cp",
];

/// One checked item (`tool:tar`, `atomic-rename`, `base_dir:<service>`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// An optional tool is absent: the host still passes.
    pub optional: bool,
    pub detail: String,
}

/// The probe script: one `check NAME ok|fail|missing DETAIL` line per item (`missing`: an
/// optional tool is absent; the host still passes). `delta`: a service pushes deltas (GNU
/// find's `-printf`, `cp -l --parents` and `xargs -0` are then required).
pub fn probe_script(base_dirs: &[(String, String)], host_fetch: bool, delta: bool) -> String {
    let mut script = Script::new();
    script.line("for tool in");
    for tool in TOOLS {
        script.line(" ").line(tool);
    }
    script.line(
        "; do\n  if command -v \"$tool\" >/dev/null 2>&1; then printf 'check tool:%s ok %s\\n' \"$tool\" \"$(command -v \"$tool\")\"; \
         else printf 'check tool:%s fail not found on PATH\\n' \"$tool\"; fi\ndone\n\
         t=\"${TMPDIR:-/tmp}/deploy-check.$$\"\n\
         if mkdir -p \"$t/a\" \"$t/b\" && ln -s a \"$t/current\" && ln -s b \"$t/next\" && mv -Tf \"$t/next\" \"$t/current\" 2>/dev/null && [ \"$(readlink \"$t/current\")\" = b ]; then \
         printf 'check atomic-rename ok mv -T renames a symlink over another\\n'; \
         else printf 'check atomic-rename fail mv -T is not supported (GNU coreutils or busybox mv needed)\\n'; fi\n\
         rm -rf \"$t\"\n\
         if [ -e /dev/fd/1 ]; then printf 'check dev-fd ok /dev/fd present\\n'; else printf 'check dev-fd fail /dev/fd missing (needed to verify uploads while extracting)\\n'; fi\n",
    );
    script.line(
        "if command -v find >/dev/null 2>&1 && find . -maxdepth 0 -printf '' 2>/dev/null; then printf 'check tool:find ok GNU find (delta pushes, status --verify)\\n'; \
         else printf 'check tool:find %s GNU find (-printf) is needed by delta pushes and status --verify\\n' ",
    );
    script.line(if delta { "fail; fi\n" } else { "missing; fi\n" });
    if delta {
        script.line(
            "t=\"${TMPDIR:-/tmp}/deploy-check-delta.$$\"\n\
             if mkdir -p \"$t/a/b\" \"$t/c\" && : > \"$t/a/b/f\" && ( cd \"$t\" && printf 'a/b/f\\0' | xargs -0 cp -l --parents -t c -- ) 2>/dev/null && [ -f \"$t/c/a/b/f\" ]; then \
             printf 'check delta-links ok cp -l --parents and xargs -0\\n'; \
             else printf 'check delta-links fail cp -l --parents and xargs -0 are needed by delta pushes (GNU coreutils and findutils; or delta = \"off\")\\n'; fi\n\
             rm -rf \"$t\"\n",
        );
    }
    script.line(
        "         if command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then printf 'check tool:openssl ok hashes uploads (faster than sha256sum)\\n'; \
         else printf 'check tool:openssl missing uploads are hashed with sha256sum (slower)\\n'; fi\n",
    );
    if host_fetch {
        script.line(
            "if command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1; then printf 'check tool:curl-or-wget ok\\n'; \
             else printf 'check tool:curl-or-wget fail neither curl nor wget (needed by fetch = \"host\")\\n'; fi\n",
        );
    }
    for (service, base_dir) in base_dirs {
        script.push(script!(
            "b={base}\np=\"$b\"\nwhile [ ! -d \"$p\" ]; do p=$(dirname -- \"$p\"); done\n\
             if [ -w \"$p\" ]; then printf 'check base_dir:%s ok %s\\n' {service} \"$b\"; \
             else printf 'check base_dir:%s fail %s is not writable (nearest existing directory: %s)\\n' {service} \"$b\" \"$p\"; fi\n",
            base = quote(base_dir),
            service = quote(service),
        ));
    }
    script.line("exit 0\n");
    script.into_string()
}

/// Parses the probe output into check items; anything else is hostile.
pub fn parse_probe(text: &str) -> Result<Vec<Check>, String> {
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            let mut fields = line.splitn(4, ' ');
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some("check"), Some(name), Some(state @ ("ok" | "fail" | "missing")), detail) => {
                    Ok(Check {
                        name: name.to_string(),
                        ok: state == "ok",
                        optional: state == "missing",
                        detail: detail.unwrap_or("").to_string(),
                    })
                }
                _ => Err(format!(
                    "unexpected host output on line {}: {line:?}",
                    index + 1
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_passes_on_this_machine() {
        let directory = tempfile::tempdir().expect("tempdir");
        let script = probe_script(&[("app".to_string(), "srv/app".to_string())], true, true);
        let output = crate::remote::local_shell::run(directory.path(), &script);
        let checks = parse_probe(&String::from_utf8_lossy(&output.stdout)).expect("parses");
        assert!(checks.iter().all(|check| check.ok), "{checks:?}");
        assert!(checks.iter().any(|check| check.name == "tool:openssl"));
        assert!(checks.iter().any(|check| check.name == "base_dir:app"));
        assert!(checks.iter().any(|check| check.name == "atomic-rename"));
        assert!(
            !directory.path().join("srv").exists(),
            "check creates nothing"
        );
    }

    #[test]
    fn optional_tools_that_are_missing_do_not_fail_the_host() {
        let directory = tempfile::tempdir().expect("tempdir");
        let fake = directory.path().join("fake-bin");
        std::fs::create_dir_all(&fake).expect("mkdir");
        for tool in ["find", "openssl"] {
            std::fs::write(fake.join(tool), "#!/bin/sh\nexit 1\n").expect("write");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(fake.join(tool), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let path = format!(
            "{}:{}",
            fake.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe_script(
                &[("app".to_string(), "app".to_string())],
                false,
                false,
            ))
            .env("PATH", path)
            .current_dir(directory.path())
            .output()
            .expect("sh runs");
        let checks = parse_probe(&String::from_utf8_lossy(&output.stdout)).expect("parses");
        let missing: Vec<&str> = checks
            .iter()
            .filter(|check| check.optional)
            .map(|check| check.name.as_str())
            .collect();
        assert_eq!(missing, ["tool:find", "tool:openssl"]);
        assert!(
            checks.iter().all(|check| check.ok || check.optional),
            "{checks:?}"
        );
    }

    #[test]
    fn probe_output_is_parsed_strictly() {
        let checks = parse_probe("check tool:tar fail not found on PATH\n").expect("parses");
        assert!(!checks[0].ok);
        assert_eq!(checks[0].detail, "not found on PATH");
        let optional = parse_probe("check tool:find missing GNU find is needed\n").expect("parses");
        assert!(!optional[0].ok && optional[0].optional);
        assert!(parse_probe("hello\n").is_err());
        assert!(parse_probe("check x maybe\n").is_err());
    }
}
