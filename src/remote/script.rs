//! Shell text: the one way a value becomes part of a program sent to a host.
//!
//! A [`Script`] is made only of fixed text written in this tree (`&'static str`), values quoted
//! by [`quote`] (any text: paths, run ids, JSON records, commands) and values that are one shell
//! word by construction ([`ShellSafe`]: validated versions, sha256 digests, numbers), which go
//! in as they are. [`script!`] is `format!` for shell text: the template is fixed text, every
//! hole is a named argument (checked at compile time, so nothing is captured unquoted) and every
//! argument is one of those three.

use std::fmt;

use crate::inventory::Version;
use crate::manifest::Sha256;

/// A value whose text is one shell word as it is, by construction: nothing to quote.
pub trait ShellSafe: fmt::Display {}

/// `A-Z a-z 0-9 . _ + -`, starting with a letter or a digit (checked by `Version::parse`).
impl ShellSafe for Version {}
/// 64 lowercase hex digits (checked by `Sha256::parse`).
impl ShellSafe for Sha256 {}
impl ShellSafe for u64 {}
impl ShellSafe for usize {}

/// Shell text built from fixed text, quoted values and shell-safe values only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script(String);

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Appends fixed text as written (its lines end with `\n`).
    pub fn line(&mut self, fixed: &'static str) -> &mut Script {
        self.0.push_str(fixed);
        self
    }

    /// Appends a piece of shell text (another script, fixed text, a shell-safe value).
    pub fn push(&mut self, piece: impl Into<Script>) -> &mut Script {
        self.0.push_str(&piece.into().0);
        self
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// What `script!` builds: a template of fixed text whose holes are all `Script`s.
    #[doc(hidden)]
    pub fn from_template(arguments: fmt::Arguments<'_>) -> Script {
        Script(arguments.to_string())
    }
}

impl fmt::Display for Script {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Fixed text written in this tree (string literals and constants).
impl From<&'static str> for Script {
    fn from(fixed: &'static str) -> Script {
        Script(fixed.to_string())
    }
}

impl<T: ShellSafe> From<&T> for Script {
    fn from(value: &T) -> Script {
        Script(value.to_string())
    }
}

impl From<&Script> for Script {
    fn from(piece: &Script) -> Script {
        piece.clone()
    }
}

/// `format!` for shell text: `script!("rm -f -- {path}\n", path = quote(&path))`. The template
/// is fixed text (`{{` and `}}` are braces); every hole must be a named argument, and every
/// argument converts into a `Script`: a `Script` (from `quote`, `script!`...), a
/// `&'static str`, or a reference to a `ShellSafe` value.
macro_rules! script {
    ($template:literal $(, $name:ident = $value:expr)* $(,)?) => {{
        const _: () = assert!(
            $crate::remote::script::holes_are_named($template, &[$(stringify!($name)),*]),
            "every hole of a script template must be a named argument"
        );
        $crate::remote::script::Script::from_template(format_args!(
            $template $(, $name = $crate::remote::script::Script::from($value))*
        ))
    }};
}
pub(crate) use script;

/// Whether every `{hole}` of a `format!` template is one of `names` (`script!`'s compile-time
/// check: a hole that is not a named argument would capture a variable of the caller as it is).
#[doc(hidden)]
pub const fn holes_are_named(template: &str, names: &[&str]) -> bool {
    let bytes = template.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'{' {
            if index + 1 < bytes.len() && bytes[index + 1] == b'{' {
                index += 2;
                continue;
            }
            let start = index + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end] != b'}' && bytes[end] != b':' {
                end += 1;
            }
            if !is_one_of(bytes, start, end, names) {
                return false;
            }
            index = end;
        }
        index += 1;
    }
    true
}

/// Whether `bytes[start..end]` is one of `names`.
const fn is_one_of(bytes: &[u8], start: usize, end: usize, names: &[&str]) -> bool {
    let mut which = 0;
    while which < names.len() {
        let name = names[which].as_bytes();
        if name.len() == end - start {
            let mut same = true;
            let mut offset = 0;
            while offset < name.len() {
                if name[offset] != bytes[start + offset] {
                    same = false;
                }
                offset += 1;
            }
            if same {
                return true;
            }
        }
        which += 1;
    }
    false
}

/// Quotes `value` as one POSIX shell word: single quotes, with embedded single quotes as `'\''`.
pub fn quote(value: &str) -> Script {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for character in value.chars() {
        if character == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(character);
        }
    }
    quoted.push('\'');
    Script(quoted)
}

/// Joins `base` and `relative` as a remote path ("a" + "b/c" -> "a/b/c").
pub fn join(base: &str, relative: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{relative}")
    } else {
        format!("{base}/{relative}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn round_trip(value: &str) -> String {
        let output = Command::new("sh")
            .arg("-c")
            .arg(script!("printf %s {value}", value = quote(value)).into_string())
            .output()
            .expect("sh runs");
        String::from_utf8(output.stdout).expect("utf-8")
    }

    #[test]
    fn quoting_survives_the_shell() {
        for value in [
            "",
            "plain",
            "with space",
            "it's",
            "'",
            "''",
            "$(rm -rf /)",
            "`id`",
            "a\nb",
            "\\",
            "*",
            "; echo pwned",
            "{\"json\": \"x'y\"}",
        ] {
            assert_eq!(round_trip(value), value, "value {value:?}");
        }
    }

    #[test]
    fn join_adds_one_separator() {
        assert_eq!(join("/opt/app", "releases"), "/opt/app/releases");
        assert_eq!(join("/opt/app/", "releases"), "/opt/app/releases");
        assert_eq!(join("app", "shared/log"), "app/shared/log");
    }

    #[test]
    fn templates_take_fixed_text_quoted_and_safe_values() {
        let version = Version::parse("v1.2+3").expect("valid version");
        let digest = Sha256::parse(&"ab".repeat(32)).expect("a digest");
        let mut script = script!(
            "[ -d {release} ] || {{ echo {message} >&2; exit {code}; }}\n",
            release = &version,
            message = quote("it's gone"),
            code = "1",
        );
        script
            .line("echo ")
            .push(&digest)
            .line(" ")
            .push(quote("$HOME"))
            .line("\n");
        assert_eq!(
            script.into_string(),
            format!(
                "[ -d v1.2+3 ] || {{ echo 'it'\\''s gone' >&2; exit 1; }}\necho {} '$HOME'\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn every_hole_must_be_named() {
        assert!(holes_are_named("a {x} {{y}} {x:>3} b", &["x"]));
        assert!(holes_are_named("${{d#releases/}}", &[]));
        assert!(!holes_are_named("a {x} {y}", &["x"]));
        assert!(!holes_are_named("a {}", &["x"]));
        assert!(!holes_are_named("a {xy}", &["x", "y"]));
    }

    #[test]
    fn a_sha256_is_64_lowercase_hex_digits() {
        let valid = "0123456789abcdef".repeat(4);
        assert_eq!(
            Sha256::parse(&valid).map(|digest| digest.to_string()),
            Ok(valid.clone())
        );
        assert!(Sha256::parse(&valid.to_ascii_uppercase()).is_err());
        assert!(Sha256::parse(&valid[1..]).is_err());
        assert!(Sha256::parse(&format!("{valid}0")).is_err());
        assert!(Sha256::parse(&valid.replace('0', "g")).is_err());
        assert!(Sha256::parse(&format!("é{}", &valid[2..])).is_err());
    }
}
