//! `extends = "base.toml"` (SPEC §2): an inventory built on a parent file. The child's keys win;
//! tables are merged key by key (recursively); any other value, arrays included (so the
//! `[[hosts]]` list), is replaced as a whole. A parent may extend a file of its own (up to
//! `MAX_DEPTH` files, no cycles). A relative `extends` path is relative to the file that names
//! it.
//!
//! Errors still name the file, line and key, the file being the one that holds the key: each
//! parent's text is parsed after as many padding newlines as the files before it are long, so
//! every value's span is an offset past the child's text, in one range per file (`Ancestor`),
//! and `location::Parser` maps an offset back to its file and line. Relative controller paths
//! (an artifact, identity files) are resolved against the directory of the file given with
//! `-i`, whichever file holds them.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::location::{InventoryError, Parser, io_error_text};
use super::model::Inventory;
use super::raw::RawInventory;
use super::values::expand_tilde;

/// The key naming the parent file.
pub(super) const EXTENDS: &str = "extends";
/// The most parent files one inventory may have in its chain.
const MAX_DEPTH: usize = 8;

/// One parent file: its values sit at offsets `base..base + text.len()`.
pub(crate) struct Ancestor {
    pub(super) file: PathBuf,
    pub(super) text: String,
    pub(super) base: usize,
}

/// Parses and validates `text` (whose parsed `document` has an `extends` key) merged with its
/// parents.
pub(super) fn parse_extending(
    text: &str,
    file: &Path,
    document: Spanned<DeTable<'_>>,
) -> Result<Inventory, InventoryError> {
    let chain = parent_chain(text, file)?;
    let mut ancestors = Vec::with_capacity(chain.len());
    let mut base = text.len() + 1;
    for (parent_file, parent_text) in chain {
        let length = parent_text.len();
        ancestors.push(Ancestor {
            file: parent_file,
            text: parent_text,
            base,
        });
        base += length + 1;
    }
    let padded: Vec<String> = ancestors
        .iter()
        .map(|ancestor| "\n".repeat(ancestor.base) + &ancestor.text)
        .collect();
    let parser = Parser {
        text,
        file,
        ancestors: &ancestors,
    };
    let span = document.span();
    let mut merged = document.into_inner();
    // The nearest parent first: what it sets wins over what its own parents set.
    for (index, padded) in padded.iter().enumerate() {
        let parent = DeTable::parse(padded).map_err(|error| {
            let ancestor = &ancestors[index];
            Parser {
                text: &ancestor.text,
                file: &ancestor.file,
                ancestors: &[],
            }
            .syntax_error(&error)
        })?;
        merged = merge(merged, parent.into_inner());
    }
    merged.remove(EXTENDS);
    let raw = RawInventory::deserialize(toml::de::Deserializer::from(Spanned::new(
        span,
        merged.clone(),
    )))
    .map_err(|error| parser.schema_error(&error, &merged))?;
    parser.build(raw)
}

/// The parent files of `file`, nearest first, each read and syntax-checked on its own (so a
/// problem in one is reported in that file's own terms).
fn parent_chain(text: &str, file: &Path) -> Result<Vec<(PathBuf, String)>, InventoryError> {
    let mut chain: Vec<(PathBuf, String)> = Vec::new();
    let mut seen = vec![canonical(file)];
    let mut current: (PathBuf, String) = (file.to_path_buf(), text.to_string());
    loop {
        let parser = Parser {
            text: &current.1,
            file: &current.0,
            ancestors: &[],
        };
        let document = DeTable::parse(&current.1).map_err(|error| parser.syntax_error(&error))?;
        let Some(value) = document.get_ref().get(EXTENDS) else {
            return Ok(chain);
        };
        let span = value.span();
        let located = |message: String| parser.error_at(&span, EXTENDS, message);
        let Some(name) = value.get_ref().as_str() else {
            return Err(located(
                "extends must be a string: the path of the parent inventory".to_string(),
            ));
        };
        if name.is_empty() {
            return Err(located("extends must not be empty".to_string()));
        }
        let directory = current.0.parent().unwrap_or(Path::new(""));
        let parent = directory.join(expand_tilde(name));
        let parent_text = std::fs::read_to_string(&parent).map_err(|error| {
            located(format!(
                "cannot read parent inventory {}: {}",
                parent.display(),
                io_error_text(&error)
            ))
        })?;
        let identity = canonical(&parent);
        if seen.contains(&identity) {
            return Err(located(format!(
                "extends cycle: {} is already part of this inventory",
                parent.display()
            )));
        }
        if chain.len() >= MAX_DEPTH {
            return Err(located(format!(
                "more than {MAX_DEPTH} files extend one another"
            )));
        }
        seen.push(identity);
        drop(document);
        chain.push((parent.clone(), parent_text.clone()));
        current = (parent, parent_text);
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `child` over `parent`: tables merged key by key, every other value of the child kept whole.
fn merge<'i>(mut child: DeTable<'i>, parent: DeTable<'i>) -> DeTable<'i> {
    for (key, parent_value) in parent {
        match child.get_mut(key.get_ref().as_ref()) {
            Some(existing) => {
                if let (DeValue::Table(mine), DeValue::Table(theirs)) =
                    (existing.get_mut(), parent_value.into_inner())
                {
                    let own = std::mem::take(mine);
                    *mine = merge(own, theirs);
                }
            }
            None => {
                child.insert(key, parent_value);
            }
        }
    }
    child
}

#[cfg(test)]
mod tests {
    use super::super::load;

    fn write(directory: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = directory.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    const BASE: &str = "[ssh]\nuser = \"deploy\"\n\n[deploy]\nconcurrency = 4\nhost_timeout = \"1m\"\n\n[[hosts]]\nname = \"web1\"\naddress = \"10.0.0.1\"\n\n[services.app]\nbase_dir = \"/srv/app\"\nkeep_releases = 3\n[services.app.env]\nRAILS_ENV = \"production\"\nTIER = \"web\"\n";

    #[test]
    fn a_child_overrides_keys_merges_tables_and_replaces_host_lists() {
        let directory = tempfile::tempdir().expect("tempdir");
        write(directory.path(), "base.toml", BASE);
        let child = write(
            directory.path(),
            "staging.toml",
            "extends = \"base.toml\"\n[deploy]\nconcurrency = 2\n\n[[hosts]]\nname = \"stage[1:2]\"\naddress = \"10.1.0.[1:2]\"\n\n[services.app.env]\nRAILS_ENV = \"staging\"\n",
        );
        let inventory = load(&child).expect("loads");
        assert_eq!(inventory.deploy.concurrency, 2);
        assert_eq!(
            inventory.deploy.host_timeout,
            std::time::Duration::from_secs(60)
        );
        let names: Vec<&str> = inventory
            .hosts
            .iter()
            .map(|host| host.name.as_str())
            .collect();
        assert_eq!(names, ["stage1", "stage2"]);
        assert_eq!(inventory.hosts[0].user, "deploy");
        let service = &inventory.services[0];
        assert_eq!(service.keep_releases, 3);
        assert_eq!(service.env["RAILS_ENV"], "staging");
        assert_eq!(service.env["TIER"], "web");
    }

    #[test]
    fn errors_name_the_file_that_holds_the_key() {
        let directory = tempfile::tempdir().expect("tempdir");
        let base = write(
            directory.path(),
            "base.toml",
            &BASE.replace("keep_releases = 3", "keep_releases = 0"),
        );
        let child = write(
            directory.path(),
            "prod.toml",
            "extends = \"base.toml\"\n\n[deploy]\nconcurrency = 0\n",
        );
        let error = load(&child).expect_err("concurrency 0");
        assert_eq!(error.file, child);
        assert_eq!((error.line, error.key.as_str()), (4, "deploy.concurrency"));
        let child = write(directory.path(), "prod.toml", "extends = \"base.toml\"\n");
        let error = load(&child).expect_err("keep_releases 0");
        assert_eq!(error.file, base);
        assert_eq!(
            (error.line, error.key.as_str()),
            (14, "services.app.keep_releases")
        );
        write(
            directory.path(),
            "base.toml",
            &format!("\nbogus = 1\n{BASE}"),
        );
        let error = load(&child).expect_err("unknown key in the parent");
        assert_eq!(error.file, base);
        assert_eq!((error.line, error.key.as_str()), (2, "bogus"), "{error}");
        write(directory.path(), "base.toml", "[deploy\n");
        let error = load(&child).expect_err("syntax");
        assert_eq!(
            (error.file.clone(), error.line),
            (base.clone(), 1),
            "{error}"
        );
    }

    #[test]
    fn missing_parents_and_cycles_are_errors_at_the_extends_key() {
        let directory = tempfile::tempdir().expect("tempdir");
        let child = write(directory.path(), "a.toml", "# a\nextends = \"nope.toml\"\n");
        let error = load(&child).expect_err("missing");
        assert_eq!((error.line, error.key.as_str()), (2, "extends"));
        assert!(
            error.message.starts_with("cannot read parent inventory"),
            "{error}"
        );
        write(directory.path(), "b.toml", "extends = \"a.toml\"\n");
        write(directory.path(), "a.toml", "extends = \"b.toml\"\n");
        let error = load(&child).expect_err("cycle");
        assert!(error.message.contains("extends cycle"), "{error}");
        write(directory.path(), "a.toml", "extends = 3\n");
        assert!(
            load(&child)
                .expect_err("type")
                .message
                .contains("must be a string")
        );
    }
}
