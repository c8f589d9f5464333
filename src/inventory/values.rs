//! Rules for single values, whatever their place in the file: names, `max_failures`, pinned host
//! keys, http(s) URLs, controller paths (`~` expansion) and remote paths (`base_dir`, shared
//! paths). They return plain messages; `validation` adds the location.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::model::MaxFailures;

pub(super) const NAME_CHARACTERS: &str = "A-Z a-z 0-9 . _ -";

/// Expands a leading `~` or `~/` with `$HOME`. Other paths (and `~user/...`) are returned unchanged,
/// as is everything when `$HOME` is not set.
pub fn expand_tilde(path: &str) -> PathBuf {
    expand_tilde_with(path, std::env::var_os("HOME").as_deref())
}

fn expand_tilde_with(path: &str, home: Option<&OsStr>) -> PathBuf {
    match home {
        Some(home) if !home.is_empty() => {
            if path == "~" {
                PathBuf::from(home)
            } else if let Some(rest) = path.strip_prefix("~/") {
                Path::new(home).join(rest.trim_start_matches('/'))
            } else {
                PathBuf::from(path)
            }
        }
        _ => PathBuf::from(path),
    }
}

pub(super) fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "._-".contains(character))
}

pub(super) fn parse_max_failures(value: &toml::Value) -> Option<MaxFailures> {
    match value {
        toml::Value::Integer(count) => usize::try_from(*count).ok().map(MaxFailures::Count),
        toml::Value::String(text) => {
            let digits = text.strip_suffix('%')?;
            if digits.is_empty() || !digits.chars().all(|character| character.is_ascii_digit()) {
                return None;
            }
            let percent: u8 = digits.parse().ok()?;
            (percent <= 100).then_some(MaxFailures::Percent(percent))
        }
        _ => None,
    }
}

/// `"<algorithm> <base64> [comment]"` → `"<algorithm> <base64>"`.
pub(super) fn normalize_host_key(text: &str) -> Result<String, String> {
    const SHAPE: &str =
        "host_key must look like \"<algorithm> <base64>\", e.g. \"ssh-ed25519 AAAAC3Nz...\"";
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [algorithm, key, ..] = fields.as_slice() else {
        return Err(SHAPE.to_string());
    };
    if fields.len() > 3 {
        return Err(SHAPE.to_string());
    }
    if !["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|prefix| algorithm.starts_with(prefix))
    {
        return Err(format!(
            "{SHAPE}; the algorithm must start with \"ssh-\", \"ecdsa-\" or \"sk-\""
        ));
    }
    let unpadded = key.trim_end_matches('=');
    let valid_base64 = key.len() % 4 == 0
        && key.len() - unpadded.len() <= 2
        && !unpadded.is_empty()
        && unpadded.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '+' || character == '/'
        });
    if !valid_base64 {
        return Err(format!("{SHAPE}; the key is not valid base64"));
    }
    Ok(format!("{algorithm} {key}"))
}

pub(super) fn has_http_scheme(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Checks an http(s) URL. The messages never contain the URL.
pub(super) fn check_http_url(text: &str) -> Result<(), &'static str> {
    if !has_http_scheme(text) {
        return Err("the URL must start with http:// or https://");
    }
    if text
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err("the URL must not contain whitespace");
    }
    let after_scheme = text.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err("the URL has no host");
    }
    Ok(())
}

/// Splits a `/`-separated path into its components, dropping empty and `.` components.
fn path_components(path: &str) -> Result<Vec<&str>, &'static str> {
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("must not contain a `..` component"),
            other => components.push(other),
        }
    }
    Ok(components)
}

fn check_path_characters(path: &str, what: &str) -> Result<(), String> {
    if path.chars().any(char::is_control) {
        return Err(format!(
            "{what} must not contain control characters (NUL, newline, ...)"
        ));
    }
    if path.trim() != path {
        return Err(format!("{what} must not start or end with whitespace"));
    }
    Ok(())
}

/// Normalizes a remote base directory (absolute, or relative to the login directory).
pub(super) fn normalize_base_dir(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("base_dir must not be empty".to_string());
    }
    check_path_characters(raw, "base_dir")?;
    let relative_to_home = if raw == "~" {
        Some("")
    } else {
        raw.strip_prefix("~/")
    };
    let path = match relative_to_home {
        Some(rest) => rest,
        None if raw.starts_with('~') => {
            return Err(
                "base_dir may only start with `~/` (meaning the login directory)".to_string(),
            );
        }
        None => raw,
    };
    let absolute = relative_to_home.is_none() && path.starts_with('/');
    let components = path_components(path).map_err(|problem| format!("base_dir {problem}"))?;
    if components.is_empty() {
        return Err(if absolute {
            "base_dir must not be `/`".to_string()
        } else {
            "base_dir must name a directory, not the login directory itself".to_string()
        });
    }
    let joined = components.join("/");
    Ok(if absolute {
        format!("/{joined}")
    } else {
        joined
    })
}

/// Normalizes a shared path (relative to the release directory).
pub(super) fn normalize_shared_path(raw: &str) -> Result<String, String> {
    check_path_characters(raw, "shared path")?;
    if raw.starts_with('/') {
        return Err(
            "shared path must be relative (to the release directory), not absolute".to_string(),
        );
    }
    let components = path_components(raw).map_err(|problem| format!("shared path {problem}"))?;
    if components.is_empty() {
        return Err("shared path must not be empty".to_string());
    }
    Ok(components.join("/"))
}

/// Whether normalized relative path `inner` lies strictly inside `outer`.
pub(super) fn is_inside(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_expansion() {
        let home = Some(OsStr::new("/home/deploy"));
        assert_eq!(expand_tilde_with("~", home), PathBuf::from("/home/deploy"));
        assert_eq!(
            expand_tilde_with("~/.ssh/id_rsa", home),
            PathBuf::from("/home/deploy/.ssh/id_rsa")
        );
        assert_eq!(expand_tilde_with("~bob/x", home), PathBuf::from("~bob/x"));
        assert_eq!(expand_tilde_with("/a/~/b", home), PathBuf::from("/a/~/b"));
        assert_eq!(expand_tilde_with("~/x", None), PathBuf::from("~/x"));
        assert_eq!(
            expand_tilde_with("~/x", Some(OsStr::new(""))),
            PathBuf::from("~/x")
        );
    }
}
