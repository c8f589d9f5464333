//! Files of a service in `<base_dir>/shared` (SPEC §2): `shared_files` (files linked into every
//! release; they must exist on the host) and `[services.NAME.files]` (controller-side content,
//! from a local file or an environment variable, uploaded into `shared/` before the switch).
//!
//! Decisions: every `files` entry is also linked into each release like a `shared_files` entry
//! (unless it lies inside a `shared_paths` directory, which is linked already); its mode
//! defaults to `0600` (content uploaded this way is usually a secret); a relative `source` is
//! relative to the inventory file's directory. The content itself is read just before a run
//! (a missing file or unset variable is an input error, exit 2) and is never part of the
//! inventory model, so no `Debug` print can show it.

use toml::Spanned;

use super::location::{InventoryError, Parser};
use super::values::{is_inside, normalize_shared_path};

impl Parser<'_> {
    /// `shared_files`, normalized; none may repeat, lie inside a shared path or equal one.
    pub(super) fn shared_files(
        &self,
        raw: Option<&Vec<Spanned<String>>>,
        shared_paths: &[String],
        key: &str,
    ) -> Result<Vec<String>, InventoryError> {
        let mut files: Vec<String> = Vec::new();
        for (index, path) in raw.into_iter().flatten().enumerate() {
            let path_key = format!("{key}.shared_files[{index}]");
            let normalized = normalize_shared_path(path.get_ref())
                .map_err(|message| self.error_at(&path.span(), path_key.clone(), message))?;
            let problem = if files.contains(&normalized) {
                Some(format!("duplicate shared file `{normalized}`"))
            } else {
                shared_paths.iter().find_map(|directory| {
                    (normalized == *directory
                        || is_inside(&normalized, directory)
                        || is_inside(directory, &normalized))
                    .then(|| {
                        format!("shared file `{normalized}` overlaps shared path `{directory}`")
                    })
                })
            };
            if let Some(problem) = problem {
                return Err(self.error_at(&path.span(), path_key, problem));
            }
            files.push(normalized);
        }
        Ok(files)
    }
}
