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

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;

use super::location::{InventoryError, Parser, shown};
use super::raw::RawFile;
use super::values::{expand_tilde, is_inside, normalize_shared_path};
use super::variables::is_variable_name;

/// Default permissions of an uploaded file.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// One `[services.NAME.files]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFile {
    /// Normalized path relative to `shared/` (and to the release, where it is linked).
    pub path: String,
    pub source: FileSource,
    /// Permission bits (at most 0o7777 without setid: 0o777 plus sticky is refused too).
    pub mode: u32,
}

/// Where an uploaded file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A controller-side file (tilde-expanded; relative to the inventory's directory).
    Local(PathBuf),
    /// The value of this environment variable of the controller.
    Environment(String),
}

impl FileSource {
    /// Reads the content (never logged: callers keep it out of every message).
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            FileSource::Local(path) => std::fs::read(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display())),
            FileSource::Environment(name) => std::env::var_os(name)
                .map(|value| value.into_encoded_bytes())
                .ok_or_else(|| format!("environment variable {name} is not set")),
        }
    }
}

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

    pub(super) fn upload_files(
        &self,
        raw: Option<&BTreeMap<Spanned<String>, Spanned<RawFile>>>,
        key: &str,
    ) -> Result<Vec<UploadFile>, InventoryError> {
        let mut files = Vec::new();
        for (path, entry) in raw.into_iter().flatten() {
            let entry_key = format!("{key}.files.\"{}\"", shown(path.get_ref()));
            let normalized = normalize_shared_path(path.get_ref())
                .map_err(|message| self.error_at(&path.span(), entry_key.clone(), message))?;
            let value = entry.get_ref();
            let source = match (&value.source, &value.env) {
                (Some(source), None) => {
                    if source.get_ref().is_empty() {
                        return Err(self.error_at(
                            &source.span(),
                            format!("{entry_key}.source"),
                            "source must not be empty",
                        ));
                    }
                    let expanded = expand_tilde(source.get_ref());
                    let directory = self.file.parent().unwrap_or(std::path::Path::new(""));
                    FileSource::Local(directory.join(expanded))
                }
                (None, Some(name)) => {
                    if !is_variable_name(name.get_ref()) {
                        return Err(self.error_at(
                            &name.span(),
                            format!("{entry_key}.env"),
                            format!(
                                "`{}` is not an environment variable name",
                                shown(name.get_ref())
                            ),
                        ));
                    }
                    FileSource::Environment(name.get_ref().clone())
                }
                _ => {
                    return Err(self.error_at(
                        &entry.span(),
                        entry_key,
                        "give exactly one of `source` (a local file) or `env` (an environment variable)",
                    ));
                }
            };
            let mode = match &value.mode {
                Some(mode) => parse_mode(mode.get_ref()).map_err(|message| {
                    self.error_at(&mode.span(), format!("{entry_key}.mode"), message)
                })?,
                None => DEFAULT_FILE_MODE,
            };
            files.push(UploadFile {
                path: normalized,
                source,
                mode,
            });
        }
        Ok(files)
    }
}

/// `"0600"`, `"644"`: octal permission bits, no setuid/setgid/sticky.
pub(super) fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!(
            "mode `{}` must be octal permission bits, e.g. \"0600\"",
            shown(text)
        ));
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|error| error.to_string())?;
    if mode > 0o777 {
        return Err(format!(
            "mode `{}`: setuid, setgid and sticky bits are not allowed",
            shown(text)
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        assert!(parse_mode("4755").is_err());
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("rw").is_err());
    }
}
