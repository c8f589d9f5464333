//! Delta: the programs of a delta push on the host (`Step::Delta`, `Step::Verify`,
//! `Step::Repair`).
//!
//! - `receive_delta` extracts the controller's stream into `.deploy/staging/<run>/`: a `reuse`
//!   member first (the NUL-separated paths of the files the host already holds), the
//!   artifact's manifest (`manifest`, which `Finalize` records), then the members sent, under
//!   `tree/`; then it hard-links (or copies) each reused file from the
//!   base release into the staged tree with one `cp` per batch (`xargs`), never one process
//!   per file. A file that cannot be linked is left missing: verification finds it.
//! - `scan_staged` lists the staged tree and hashes every file in it (the output is parsed by
//!   `scan::parse_scan` and compared with the artifact's manifest by the controller); nothing
//!   names the tree a release before that comparison found nothing to send again.
//! - `repair` extracts a stream of the members that differed over what is staged: tar removes
//!   an existing file before writing it, so a hard link to the base release is replaced, never
//!   written through (the base release is never changed).
//!
//! Run inside `<base_dir>` under the run's lock, like every step.

use super::layout;
use super::scan::scan_program;
use super::script::{Script, quote, script};
use super::step::ReuseMode;
use super::steps::{Lowering, prepare};
use crate::inventory::Version;

/// Name of the stream member that lists the reused files (NUL-separated), beside `tree/`.
pub const REUSE_MEMBER: &str = "reuse";
/// Name of the stream member that holds the artifact's manifest text (recorded by Finalize).
pub const MANIFEST_MEMBER: &str = "manifest";
/// Directory of the stream (and of staging) that holds the release's members.
pub const TREE_MEMBER: &str = "tree";

/// `tar -x` of the stream into `$s`, gzip-compressed or not.
fn extract(compress: bool) -> Script {
    if compress {
        script!("tar -xzpf - --no-same-owner -C \"$s\" >&2")
    } else {
        script!("tar -xpf - --no-same-owner -C \"$s\" >&2")
    }
}

impl Lowering<'_> {
    /// Receives a delta stream into staging and links (or copies) the reused files from `base`.
    pub(super) fn receive_delta(
        &self,
        version: &Version,
        base: &Version,
        reuse: ReuseMode,
        compress: bool,
    ) -> Script {
        script!(
            "set -u\numask 022\n{enter}{prepare}s={staging}\nbase={base_release}\n\
             rm -rf -- \"$s\" && mkdir -p -- \"$s/{tree}\" || exit 1\n\
             [ -d \"$base\" ] || {{ echo 'the base release {base} is no longer on this host' >&2; exit 1; }}\n\
             {extract} || {{ echo 'extracting the delta of {version} failed' >&2; exit 1; }}\n\
             [ -f \"$s/{reuse}\" ] || {{ echo 'the delta stream ended without its list of reused files' >&2; exit 1; }}\n\
             find \"$s/{tree}\" ! -type l -perm -0002 -exec chmod o-w {{}} + || exit 1\n\
             t=$(cd -- \"$s/{tree}\" && pwd -P) || exit 1\n\
             ( cd -- \"$base\" && xargs -0 -r cp {copy} --parents -t \"$t\" -- < \"$t/../{reuse}\" ) 2>/dev/null || true\n\
             rm -f -- \"$s/{reuse}\"\n",
            enter = self.enter(),
            prepare = prepare(),
            staging = quote(&layout::staging(self.run_id)),
            base_release = quote(&layout::release(base)),
            base = base,
            version = version,
            tree = TREE_MEMBER,
            reuse = REUSE_MEMBER,
            extract = extract(compress),
            copy = match reuse {
                ReuseMode::Hardlink => "-l",
                ReuseMode::Copy => "-p",
            },
        )
    }

    /// Lists and hashes the staged tree (output: `scan::parse_scan`).
    pub(super) fn scan_staged(&self) -> Script {
        script!(
            "set -u\n{enter}cd -- {staging}/{tree} || {{ echo 'the staged release is missing' >&2; exit 1; }}\n{scan}",
            enter = self.enter(),
            staging = quote(&layout::staging(self.run_id)),
            tree = TREE_MEMBER,
            scan = scan_program(),
        )
    }

    /// Extracts members sent again over the staged tree.
    pub(super) fn repair(&self, version: &Version, compress: bool) -> Script {
        script!(
            "set -u\numask 022\n{enter}s={staging}\n\
             [ -d \"$s/{tree}\" ] || {{ echo 'the staged release is missing' >&2; exit 1; }}\n\
             {extract} || {{ echo 'extracting the repaired files of {version} failed' >&2; exit 1; }}\n\
             rm -f -- \"$s/{reuse}\"\n\
             find \"$s/{tree}\" ! -type l -perm -0002 -exec chmod o-w {{}} + || exit 1\n",
            enter = self.enter(),
            staging = quote(&layout::staging(self.run_id)),
            tree = TREE_MEMBER,
            reuse = REUSE_MEMBER,
            extract = extract(compress),
            version = version,
        )
    }
}
