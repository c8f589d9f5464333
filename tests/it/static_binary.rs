//! The release binary is static: it runs in an empty root holding only itself, `/etc/hosts`
//! and the inputs of a `check` (inventory, key, known_hosts), with no dynamic loader, no shared
//! library, no `/proc`, no `/etc/passwd` and no `nsswitch.conf`; it prints its version and
//! checks a loopback host reached by a name from that `/etc/hosts`. The one thing it needs
//! from the machine is a random source (`src/static_build.rs`): without `/dev/random` and
//! `/dev/urandom` it says so and stops; with them bind-mounted in, the check is green.
//!
//! The binary: `DEPLOY_STATIC_BINARY` (e.g. the release build of scripts/build-static.sh),
//! else this test runs `scripts/build-static.sh --debug` itself: only the deploy crate is
//! compiled again (the dependencies are the test build's), into target/static-dev/, so the
//! other tests' target/debug/deploy is left alone.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Fleet, path_str, read, real_program, run};

/// The name the empty root's `/etc/hosts` gives 127.0.0.1.
const HOST_NAME: &str = "static-host.test";

#[test]
fn the_static_binary_runs_in_an_empty_root() {
    let binary = static_binary();
    let bytes = fs::read(&binary).unwrap_or_else(|e| panic!("reading {}: {e}", binary.display()));
    assert_eq!(
        program_interpreter(&bytes),
        None,
        "{} is dynamically linked",
        binary.display()
    );

    let fleet = Fleet::start(1);
    let host = fleet.host(0);
    let empty = tempfile::tempdir().expect("temp dir");
    let root = empty.path();
    for dir in ["etc", "ci"] {
        fs::create_dir(root.join(dir)).expect("mkdir");
    }
    fs::copy(&binary, root.join("deploy")).expect("copy the binary");
    fs::write(
        root.join("etc/hosts"),
        format!("127.0.0.1 localhost\n127.0.0.1 {HOST_NAME}\n"),
    )
    .expect("hosts");
    fs::copy(fleet.client_key(), root.join("ci/key")).expect("copy the key");
    fs::set_permissions(root.join("ci/key"), fs::Permissions::from_mode(0o600)).expect("chmod");
    // known_hosts names the host as the inventory does (its name, not 127.0.0.1).
    fs::write(
        root.join("ci/known_hosts"),
        format!("[{HOST_NAME}]:{} {}\n", host.port, host.host_key_public),
    )
    .expect("known_hosts");
    fs::write(
        root.join("ci/deploy.toml"),
        format!(
            "[ssh]\nconfig = false\nuser = \"{}\"\nidentity_files = [\"/ci/key\"]\nknown_hosts = [\"/ci/known_hosts\"]\n\n\
             [[hosts]]\nname = \"web1\"\naddress = \"{HOST_NAME}\"\nport = {}\n\n\
             [services.app]\nbase_dir = \"app\"\n",
            fleet.user(),
            host.port
        ),
    )
    .expect("inventory");

    let version = run(&mut in_root(root, false, &["/deploy", "--version"]));
    assert_eq!(version.code, 0, "{version:?}");
    assert_eq!(
        version.stdout.trim(),
        format!("deploy {}", env!("CARGO_PKG_VERSION"))
    );

    let check = [
        "/deploy",
        "-i",
        "/ci/deploy.toml",
        "--output",
        "json",
        "--no-progress",
        "check",
    ];
    // Without /dev/random and /dev/urandom a static build has no random numbers: one clear
    // error before any connection, not a panic inside the SSH library.
    let refused = run(&mut in_root(root, false, &check));
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("cannot open /dev/random") && refused.stderr.contains("bind-mount"),
        "{refused:?}"
    );
    assert!(!refused.stderr.contains("panicked"), "{refused:?}");

    // With them (bind-mounted from the host), the check is green: host name from /etc/hosts,
    // key and known_hosts from /ci, nothing else.
    let checked = run(&mut in_root(root, true, &check));
    assert_eq!(checked.code, 0, "{checked:?}");
    assert_eq!(checked.host("web1")["result"], "ok", "{checked:?}");
    let mut top: Vec<String> = fs::read_dir(root)
        .expect("read root")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    top.sort();
    assert_eq!(top, ["ci", "deploy", "dev", "etc"]);
}

/// `args` run with `root` as `/`, in a mount namespace of their own (`unshare --mount`, in a
/// user namespace too when not root) where, with `devices`, `/dev/random` and `/dev/urandom`
/// are bind-mounted from the host. A clean environment: `PATH` leads nowhere, `HOME=/ci`, no
/// `USER` (the operator name comes from the fallbacks).
fn in_root(root: &Path, devices: bool, args: &[&str]) -> Command {
    let mut command = Command::new(real_program("unshare"));
    if !is_root() {
        command.arg("--map-root-user");
    }
    let mounts = if devices {
        for device in ["random", "urandom"] {
            let dir = root.join("dev");
            fs::create_dir_all(&dir).expect("mkdir dev");
            fs::write(dir.join(device), "").expect("mount point");
        }
        "for device in random urandom; do \"$mount\" --bind \"/dev/$device\" \"$root/dev/$device\" || exit 1; done; "
    } else {
        ""
    };
    let script =
        format!("mount=$1 chroot=$2 root=$3; shift 3; {mounts}exec \"$chroot\" \"$root\" \"$@\"");
    command
        .args([
            "--mount",
            path_str(&real_program("sh")),
            "-c",
            &script,
            "sh",
        ])
        .arg(real_program("mount"))
        .arg(real_program("chroot"))
        .arg(root)
        .args(args)
        .env_clear()
        .env("HOME", "/ci")
        .env("PATH", "/nonexistent")
        .env("NO_COLOR", "1");
    command
}

fn is_root() -> bool {
    read("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// The static binary to test: `DEPLOY_STATIC_BINARY`, else built by
/// `scripts/build-static.sh --debug`.
fn static_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DEPLOY_STATIC_BINARY") {
        return PathBuf::from(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-static.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("--debug")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let path = PathBuf::from(&printed);
    if path.is_absolute() {
        path
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }
}

/// The dynamic loader an ELF64 little-endian executable asks for (its `PT_INTERP` program
/// header), `None` for a static one. Panics on anything that is not such an ELF file.
fn program_interpreter(elf: &[u8]) -> Option<String> {
    assert!(
        elf.len() >= 64 && elf[..4] == *b"\x7fELF" && elf[4] == 2 && elf[5] == 1,
        "not an ELF64 little-endian file"
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u64_at = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&elf[at..at + 8]);
        u64::from_le_bytes(bytes) as usize
    };
    let (table, entry_size, entries) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..entries).find_map(|index| {
        let header = table + index * entry_size;
        let kind = u32::from_le_bytes([
            elf[header],
            elf[header + 1],
            elf[header + 2],
            elf[header + 3],
        ]);
        (kind == 3).then(|| {
            let (offset, size) = (u64_at(header + 8), u64_at(header + 32));
            String::from_utf8_lossy(&elf[offset..offset + size])
                .trim_end_matches('\0')
                .to_string()
        })
    })
}

#[test]
fn a_dynamic_executable_names_its_loader() {
    // The check above, on a program of this machine (dynamically linked, as the test binary
    // itself is).
    let me = std::env::current_exe().expect("current exe");
    let interpreter = program_interpreter(&fs::read(me).expect("read self"));
    assert!(
        interpreter
            .as_deref()
            .is_some_and(|path| path.contains("ld-linux")),
        "{interpreter:?}"
    );
}
