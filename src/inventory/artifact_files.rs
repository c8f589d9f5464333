//! Local artifact files: before a run, every local artifact of the services it works on must
//! exist and be a regular file (the inventory only resolves their paths).

use std::io;

use super::location::{InventoryError, io_error_text};
use super::model::{ArtifactSource, Inventory};

impl Inventory {
    /// Checks that every local artifact file of the given services (indexes into
    /// [`Inventory::services`]) exists and is a regular file. URL artifacts are not checked here.
    pub fn check_artifact_files(&self, services: &[usize]) -> Result<(), InventoryError> {
        for &index in services {
            let Some(service) = self.services.get(index) else {
                return Err(InventoryError {
                    file: self.file.clone(),
                    line: 0,
                    key: "services".to_string(),
                    message: format!("no service with index {index}"),
                });
            };
            let Some(ArtifactSource::Path(path)) = &service.artifact else {
                continue;
            };
            let problem = match std::fs::metadata(path) {
                Ok(metadata) if metadata.is_file() => continue,
                Ok(_) => format!("artifact is not a regular file: {}", path.display()),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    format!("artifact file not found: {}", path.display())
                }
                Err(error) => format!(
                    "cannot read artifact file {}: {}",
                    path.display(),
                    io_error_text(&error)
                ),
            };
            return Err(InventoryError {
                file: self.file.clone(),
                line: service.artifact_line,
                key: format!("services.{}.artifact", service.name),
                message: problem,
            });
        }
        Ok(())
    }
}
