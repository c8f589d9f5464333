//! Shell quoting: the one place where values become shell words.
//!
//! Every remote command is a POSIX `sh` script; any value that is not a fixed part of a script
//! (paths, versions, JSON records, operator names) passes through `quote` here and nowhere else.

/// Quotes `value` as one POSIX shell word: single quotes, with embedded single quotes as `'\''`.
pub fn quote(value: &str) -> String {
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
    quoted
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
            .arg(format!("printf %s {}", quote(value)))
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
}
