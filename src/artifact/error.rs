//! Why an artifact was refused: [`ArtifactError`], shared by the inspection pass, the member
//! rules and the readers under the tar parser.

use std::io;
use std::path::PathBuf;

use crate::manifest::printable;

/// Why an artifact was refused. Every message starts with the artifact path.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{}: cannot open artifact: {io}", .path.display())]
    Open { path: PathBuf, io: io::Error },
    #[error("{}: cannot read artifact: {io}", .path.display())]
    Read { path: PathBuf, io: io::Error },
    #[error("{}: not a gzip file: {reason}", .path.display())]
    NotGzip { path: PathBuf, reason: String },
    #[error("{}: corrupt or truncated archive: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: member `{}`: {reason}", .path.display(), printable(.member))]
    Member {
        path: PathBuf,
        member: String,
        reason: String,
    },
    #[error("{}: archive has no entries", .path.display())]
    Empty { path: PathBuf },
    /// Refused by the caller (`commands::shipment`) when the service does not set
    /// `strip_components`: see `Artifact::single_top_directory`.
    #[error(
        "{}: every member sits under one top directory `{}/`, which would land as `current/{}/...`: \
         set `strip_components = 1` in the service to unwrap it, or build the tarball from inside the \
         directory (`tar -C build -czf app.tar.gz .`); `strip_components = 0` takes it as it is",
        .path.display(), printable(.directory), printable(.directory)
    )]
    LeadingDirectory { path: PathBuf, directory: String },
}
