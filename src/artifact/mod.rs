//! The release artifact: reading and validating a release tarball (`.tar.gz`) once.
//!
//! This module owns:
//! - [`inspect_keeping`]: a single streaming pass over the artifact that computes the sha256 and
//!   size of the whole file, checks gzip and tar integrity, enforces the member rules (no
//!   absolute or `..` paths, no name component over 255 bytes, no device files, symlinks that
//!   stay inside the release, no setuid/setgid bits unless the service's [`MemberPolicy`]
//!   allows them, ...) and builds the [`Manifest`] (per-file sha256, modes, sizes, link
//!   targets). Memory use does not depend on the artifact's size: data flows through fixed
//!   64 KiB buffers and is never held whole in memory (only the manifest grows, with the number
//!   of members). It can also keep the decompressed tar (an unlinked temporary file, up to
//!   1 GiB) for the delta streams; `inspect_with` is its shorthand in tests.
//!
//! It does no network I/O. The manifest itself (its text form, its comparable form, diffs) is
//! `crate::manifest`; its types are re-exported here.
//!
//! - `inspection`: the one pass and [`Artifact`];
//! - `error`: `ArtifactError`, why an artifact was refused;
//! - `members`: the member rules, and how modes are recorded;
//! - `delta`: the stream of some of the artifact's members, for a delta push;
//! - `streaming`: the readers under the tar parser (hashing, gzip member chain, header budget).

mod delta;
mod error;
mod inspection;
mod members;
mod streaming;

pub use crate::manifest::{Diff, Entry, EntryKind, Manifest};
pub use delta::{MemberStream, SharedStreams, unlinked_temporary};
pub use error::ArtifactError;
#[cfg(test)]
pub use inspection::inspect_with;
pub use inspection::{Artifact, inspect_keeping};
pub use members::MemberPolicy;
pub use streaming::Unpacked;
