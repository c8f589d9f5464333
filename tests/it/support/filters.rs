//! The one place where run-dependent text is made stable for whole-output comparisons (insta
//! snapshots in `tests/it/snapshots/`, exact `assert_eq!` on error texts):
//!
//! | what | example | becomes |
//! |---|---|---|
//! | a directory (the fleet's temp dir) | `/tmp/deploy-fleet-a1B2c3/known_hosts` | `[DIR]/known_hosts` |
//! | a port (every host's, or one host's) | `127.0.0.1:40123`, `-p 40123 ` | `127.0.0.1:[PORT]`, `-p [PORT] ` |
//! | a run id | `20261126T170102Z-1a2b` | `[RUN]` |
//! | a duration | `1.5s` | `[TIME]` |
//! | a byte count | `153 B`, `1.5 KiB`, `30.0 MiB` | `[BYTES]` |
//!
//! and, for tables, [`squeeze_columns`] (column widths depend on the filtered values).
//!
//! insta's own `filters` setting needs its `filters` feature (and the regex crate), which this
//! package does not enable; these rules are applied to the text before `assert_snapshot!`.

use std::path::Path;

use super::Fleet;

const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// A set of filters: literal directories and ports, then run ids, durations and byte counts.
#[derive(Clone, Debug)]
pub struct Filters {
    dirs: Vec<String>,
    ports: Vec<u16>,
    run_ids: bool,
    times: bool,
    bytes: bool,
}

impl Filters {
    /// Every filter, for `fleet`: its directory, every host's port, run ids, durations, bytes.
    pub fn for_fleet(fleet: &Fleet) -> Filters {
        let mut filters = Filters::literal().dir(fleet.dir());
        for host in fleet.hosts() {
            filters = filters.port(host.port);
        }
        Filters {
            run_ids: true,
            times: true,
            bytes: true,
            ..filters
        }
    }

    /// Only the directories and ports added with [`Filters::dir`] and [`Filters::port`]: for an
    /// exact comparison that must not blur anything else.
    pub fn literal() -> Filters {
        Filters {
            dirs: Vec::new(),
            ports: Vec::new(),
            run_ids: false,
            times: false,
            bytes: false,
        }
    }

    /// `dir` (as displayed) becomes `[DIR]`.
    pub fn dir(mut self, dir: &Path) -> Filters {
        self.dirs.push(dir.display().to_string());
        self
    }

    /// `port` becomes `[PORT]` after a `:` or a space, when no digit follows.
    pub fn port(mut self, port: u16) -> Filters {
        self.ports.push(port);
        self
    }

    pub fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        for dir in &self.dirs {
            text = text.replace(dir.as_str(), "[DIR]");
        }
        for port in &self.ports {
            text = replace_port(&text, *port);
        }
        if self.run_ids {
            for id in run_ids(&text) {
                text = text.replace(&id, "[RUN]");
            }
        }
        if self.times || self.bytes {
            let lines: Vec<String> = text
                .split('\n')
                .map(|line| {
                    let line = if self.times {
                        filter_times(line)
                    } else {
                        line.to_string()
                    };
                    if self.bytes {
                        filter_bytes(&line)
                    } else {
                        line
                    }
                })
                .collect();
            text = lines.join("\n");
        }
        text
    }
}

/// `text` with every filter for `fleet` applied ([`Filters::for_fleet`]).
pub fn redact(text: &str, fleet: &Fleet) -> String {
    Filters::for_fleet(fleet).apply(text)
}

/// A table's runs of 2+ spaces become exactly two (column widths depend on filtered values);
/// every line ends with a newline.
pub fn squeeze_columns(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut out = String::new();
            let mut spaces = 0;
            for c in line.chars() {
                if c == ' ' {
                    spaces += 1;
                    continue;
                }
                if spaces > 0 {
                    out.push_str(if spaces >= 2 { "  " } else { " " });
                    spaces = 0;
                }
                out.push(c);
            }
            out
        })
        .map(|line| line + "\n")
        .collect()
}

/// `port` after `:` or a space, with no digit after it, becomes `[PORT]`.
fn replace_port(text: &str, port: u16) -> String {
    let digits = port.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&digits) {
        let end = at + digits.len();
        let before = rest[..at].chars().next_back();
        let after = rest[end..].chars().next();
        out.push_str(&rest[..at]);
        if matches!(before, Some(':' | ' ')) && !after.is_some_and(|c| c.is_ascii_digit()) {
            out.push_str("[PORT]");
        } else {
            out.push_str(&digits);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Run ids look like `20261126T170102Z-1a2b`.
fn run_ids(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| {
            word.len() > 18
                && word.as_bytes().get(8) == Some(&b'T')
                && word.as_bytes().get(15) == Some(&b'Z')
                && word.as_bytes().get(16) == Some(&b'-')
                && word[..8].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_string)
        .collect()
}

/// Words like `1.5s` become `[TIME]`.
fn filter_times(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            let trimmed = word.trim_end_matches('s');
            if word.ends_with('s')
                && !trimmed.is_empty()
                && trimmed.parse::<f64>().is_ok()
                && trimmed.contains('.')
            {
                "[TIME]".to_string()
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `153 B`, `1.5 KiB`, `30.0 MiB` (a number, then a unit word) become `[BYTES]`; punctuation
/// after the unit (`KiB,`) is kept.
fn filter_bytes(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        let is_number = !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && word.parse::<f64>().is_ok();
        if is_number && let Some(next) = words.get(index + 1) {
            let unit = next.trim_end_matches(|c: char| !c.is_ascii_alphabetic());
            if UNITS.contains(&unit) {
                out.push(format!("[BYTES]{}", &next[unit.len()..]));
                index += 2;
                continue;
            }
        }
        out.push(word.to_string());
        index += 1;
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_on_its_own() {
        let filters = Filters::literal().dir(Path::new("/tmp/f")).port(4012);
        assert_eq!(
            filters.apply("/tmp/f/known_hosts [127.0.0.1]:4012 -p 4012 x :40123 4012"),
            "[DIR]/known_hosts [127.0.0.1]:[PORT] -p [PORT] x :40123 [PORT]"
        );
        let all = Filters {
            run_ids: true,
            times: true,
            bytes: true,
            ..Filters::literal()
        };
        assert_eq!(
            all.apply("push 20261126T170102Z-1a2b: ok\nweb1  153 B  1.5 KiB, 1.5s  (2 hosts)"),
            "push [RUN]: ok\nweb1  [BYTES]  [BYTES], [TIME]  (2 hosts)"
        );
        assert_eq!(squeeze_columns("a    b c\nd  e"), "a  b c\nd  e\n");
    }
}
