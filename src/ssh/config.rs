//! The OpenSSH client configuration (`~/.ssh/config`, ssh_config(5)): read once per run
//! ([`ClientConfig::load`]), then asked per host ([`ClientConfig::query`]) for the values of the
//! keys `deploy` uses, each with the `file:line` it came from. Free of russh.
//!
//! Written here rather than taken from a crate: `russh-config` matches `Host` lines by exact
//! name only (no wildcards, negation, `Include` or `Match`) and keeps the last value instead of
//! the first; `ssh2-config` has wildcards, negation and `Include` but no `Match` and no line
//! numbers for the origin of a value. What is supported: `Host` patterns (`*`, `?`, `!`
//! negation), `Include` (globs, relative to `~/.ssh`, nested, inside `Host`/`Match` blocks as
//! OpenSSH does), `Match all`, `host`, `originalhost`, `user`, `localuser` (each negatable
//! with `!`); the first value obtained for a key wins, `IdentityFile` and `CertificateFile`
//! accumulate. Any other `Match` criterion (`exec`, `canonical`, `final`, `tagged`,
//! `localnetwork`) is refused with its file and line rather than guessed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::text::wildcard_match;

/// How deep `Include` may nest (OpenSSH allows 16).
const INCLUDE_DEPTH: usize = 16;
/// Whole configuration size bound (bytes, over every file read).
const SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// An error in the configuration, naming the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Where a line of the configuration is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}", self.file.display(), self.line)
    }
}

/// One `Host` or `Match` line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Host(Vec<Pattern>),
    Match(Vec<Criterion>),
}

/// One `Match` criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Criterion {
    All,
    Host(bool, Vec<Pattern>),
    OriginalHost(bool, Vec<Pattern>),
    User(bool, Vec<Pattern>),
    LocalUser(bool, Vec<Pattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negated: bool,
    glob: String,
}

/// One option line with the conditions (outermost first) it sits under.
#[derive(Debug, Clone)]
struct Line {
    conditions: Vec<std::sync::Arc<Condition>>,
    key: String,
    value: Value,
    origin: Origin,
}

/// The parsed value of an option `deploy` uses (parsed when the file is read, so a query never fails).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(String),
    Port(u16),
    Flag(bool),
    Seconds(u64),
    Count(u64),
    Files(Vec<String>),
}

/// The keys `deploy` reads; any other key is accepted and ignored.
const KEYS: [&str; 16] = [
    "hostname",
    "port",
    "user",
    "identityfile",
    "certificatefile",
    "identitiesonly",
    "identityagent",
    "proxyjump",
    "proxycommand",
    "userknownhostsfile",
    "globalknownhostsfile",
    "hostkeyalias",
    "stricthostkeychecking",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
];

/// A value from the configuration and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// What the configuration says about one host (each `None` when nothing matched).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<Setting<String>>,
    pub port: Option<Setting<u16>>,
    pub user: Option<Setting<String>>,
    /// `~` and `%` tokens expanded; `none` removes the earlier ones, as OpenSSH does.
    pub identity_files: Vec<Setting<PathBuf>>,
    pub certificate_files: Vec<Setting<PathBuf>>,
    pub identities_only: Option<Setting<bool>>,
    /// `none`, `SSH_AUTH_SOCK` or a socket path (expanded).
    pub identity_agent: Option<Setting<String>>,
    /// `none` kept as is.
    pub proxy_jump: Option<Setting<String>>,
    /// `none` kept as is; `%` tokens NOT expanded yet (the connection expands them).
    pub proxy_command: Option<Setting<String>>,
    pub user_known_hosts: Option<Setting<Vec<PathBuf>>>,
    pub global_known_hosts: Option<Setting<Vec<PathBuf>>>,
    pub host_key_alias: Option<Setting<String>>,
    /// Lower case, as written: `yes`, `accept-new`, `no`, `off`, `ask`.
    pub strict_host_key_checking: Option<Setting<String>>,
    pub connect_timeout: Option<Setting<Duration>>,
    pub server_alive_interval: Option<Setting<Duration>>,
    pub server_alive_count_max: Option<Setting<u64>>,
}

/// Who is asking, for `Match user`/`localuser` and the `%` tokens of file names.
#[derive(Debug, Clone)]
pub struct Asker<'a> {
    /// The remote user as far as known before the configuration is read (the inventory's).
    pub user: Option<&'a str>,
    /// The local user (`%u`, `Match localuser`).
    pub local_user: &'a str,
    /// The local home directory (`~`, `%d`).
    pub home: &'a Path,
}

/// The parsed configuration: every option line in file order (includes expanded in place).
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    lines: Vec<Line>,
}

impl ClientConfig {
    /// Reads `path` (and what it includes). A missing top-level file is an empty configuration.
    pub fn load(path: &Path, home: &Path) -> Result<ClientConfig, ConfigError> {
        let mut config = ClientConfig::default();
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(config),
            Err(error) => {
                return Err(ConfigError {
                    file: path.display().to_string(),
                    line: 0,
                    message: format!("cannot read the ssh_config: {error}"),
                });
            }
        };
        let mut reader = Reader {
            home,
            size: text.len(),
        };
        reader.file(&mut config.lines, path, &text, &[], 0)?;
        Ok(config)
    }

    /// Parses `text` as if read from `path` (tests, property tests).
    #[cfg(test)]
    pub fn parse(path: &Path, text: &str, home: &Path) -> Result<ClientConfig, ConfigError> {
        let mut config = ClientConfig::default();
        let mut reader = Reader {
            home,
            size: text.len(),
        };
        reader.file(&mut config.lines, path, text.as_bytes(), &[], 0)?;
        Ok(config)
    }

    /// Whether no option line was read at all.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The settings for `name` (the name typed after `ssh`), first value obtained wins.
    pub fn query(&self, name: &str, asker: &Asker<'_>) -> HostConfig {
        let original = name.to_ascii_lowercase();
        let mut found = HostConfig::default();
        for line in &self.lines {
            let host = found
                .host_name
                .as_ref()
                .map(|setting| expand_host_name(&setting.value, &original))
                .unwrap_or_else(|| original.clone());
            let user = asker
                .user
                .map(str::to_string)
                .or_else(|| found.user.as_ref().map(|setting| setting.value.clone()))
                .unwrap_or_else(|| asker.local_user.to_string());
            let subject = Subject {
                original: &original,
                host: &host,
                user: &user,
                local_user: asker.local_user,
            };
            if line
                .conditions
                .iter()
                .all(|condition| subject.matches(condition))
            {
                apply(&mut found, line, &original, asker);
            }
        }
        if let Some(setting) = &mut found.host_name {
            setting.value = expand_host_name(&setting.value, &original);
        }
        found
    }
}

/// The names a line's conditions are evaluated against.
struct Subject<'a> {
    original: &'a str,
    host: &'a str,
    user: &'a str,
    local_user: &'a str,
}

impl Subject<'_> {
    fn matches(&self, condition: &Condition) -> bool {
        match condition {
            Condition::Host(patterns) => list_matches(patterns, self.original, true),
            Condition::Match(criteria) => criteria.iter().all(|criterion| match criterion {
                Criterion::All => true,
                Criterion::Host(negated, patterns) => {
                    list_matches(patterns, self.host, true) != *negated
                }
                Criterion::OriginalHost(negated, patterns) => {
                    list_matches(patterns, self.original, true) != *negated
                }
                Criterion::User(negated, patterns) => {
                    list_matches(patterns, self.user, false) != *negated
                }
                Criterion::LocalUser(negated, patterns) => {
                    list_matches(patterns, self.local_user, false) != *negated
                }
            }),
        }
    }
}

/// OpenSSH's pattern lists: some positive pattern matches and no negated one does.
fn list_matches(patterns: &[Pattern], subject: &str, fold_case: bool) -> bool {
    let subject = if fold_case {
        subject.to_ascii_lowercase()
    } else {
        subject.to_string()
    };
    let mut matched = false;
    for pattern in patterns {
        let glob = if fold_case {
            pattern.glob.to_ascii_lowercase()
        } else {
            pattern.glob.clone()
        };
        if wildcard_match(glob.as_bytes(), subject.as_bytes()) {
            if pattern.negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `HostName` may hold `%h` (the original name) and `%%`.
fn expand_host_name(value: &str, original: &str) -> String {
    expand_tokens(value, &[('h', original)])
}

/// Replaces `%c` tokens from `tokens` and `%%`; an unknown token is kept as written.
pub(super) fn expand_tokens(value: &str, tokens: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(character) = chars.next() {
        if character != '%' {
            out.push(character);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(token) => match tokens.iter().find(|(name, _)| *name == token) {
                Some((_, replacement)) => out.push_str(replacement),
                None => {
                    out.push('%');
                    out.push(token);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// A file name from the configuration: `~` and the `%` tokens known at this point expanded.
fn expand_file(value: &str, original: &str, found: &HostConfig, asker: &Asker<'_>) -> PathBuf {
    let home = asker.home.to_string_lossy();
    let host = found
        .host_name
        .as_ref()
        .map(|setting| expand_host_name(&setting.value, original))
        .unwrap_or_else(|| original.to_string());
    let port = found
        .port
        .as_ref()
        .map(|setting| setting.value.to_string())
        .unwrap_or_else(|| "22".to_string());
    let user = asker
        .user
        .map(str::to_string)
        .or_else(|| found.user.as_ref().map(|setting| setting.value.clone()))
        .unwrap_or_else(|| asker.local_user.to_string());
    let expanded = expand_tokens(
        value,
        &[
            ('d', &home),
            ('h', &host),
            ('n', original),
            ('p', &port),
            ('r', &user),
            ('u', asker.local_user),
        ],
    );
    tilde(&expanded, asker.home)
}

fn tilde(value: &str, home: &Path) -> PathBuf {
    if value == "~" {
        home.to_path_buf()
    } else if let Some(rest) = value.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(value)
    }
}

fn apply(found: &mut HostConfig, line: &Line, original: &str, asker: &Asker<'_>) {
    let origin = &line.origin;
    fn first<T>(slot: &mut Option<Setting<T>>, value: T, origin: &Origin) {
        if slot.is_none() {
            *slot = Some(Setting {
                value,
                origin: origin.clone(),
            });
        }
    }
    let files = |found: &HostConfig, values: &[String]| -> Vec<PathBuf> {
        values
            .iter()
            .map(|value| expand_file(value, original, found, asker))
            .collect()
    };
    match (line.key.as_str(), &line.value) {
        ("hostname", Value::Text(text)) => first(&mut found.host_name, text.clone(), origin),
        ("port", Value::Port(port)) => first(&mut found.port, *port, origin),
        ("user", Value::Text(text)) => first(&mut found.user, text.clone(), origin),
        ("identityfile" | "certificatefile", Value::Text(text)) => {
            let is_identity = line.key == "identityfile";
            let path = expand_file(text, original, found, asker);
            let list = if is_identity {
                &mut found.identity_files
            } else {
                &mut found.certificate_files
            };
            if text.eq_ignore_ascii_case("none") {
                list.clear();
            } else if !list.iter().any(|setting| setting.value == path) {
                list.push(Setting {
                    value: path,
                    origin: origin.clone(),
                });
            }
        }
        ("identitiesonly", Value::Flag(flag)) => first(&mut found.identities_only, *flag, origin),
        ("identityagent", Value::Text(text)) => {
            let value = if text.eq_ignore_ascii_case("none") || text == "SSH_AUTH_SOCK" {
                text.clone()
            } else if let Some(variable) = text.strip_prefix('$') {
                std::env::var(variable).unwrap_or_default()
            } else {
                expand_file(text, original, found, asker)
                    .to_string_lossy()
                    .into_owned()
            };
            first(&mut found.identity_agent, value, origin)
        }
        ("proxyjump", Value::Text(text)) => first(&mut found.proxy_jump, text.clone(), origin),
        ("proxycommand", Value::Text(text)) => {
            first(&mut found.proxy_command, text.clone(), origin)
        }
        ("userknownhostsfile", Value::Files(values)) => {
            let value = files(found, values);
            first(&mut found.user_known_hosts, value, origin)
        }
        ("globalknownhostsfile", Value::Files(values)) => {
            let value = files(found, values);
            first(&mut found.global_known_hosts, value, origin)
        }
        ("hostkeyalias", Value::Text(text)) => {
            first(&mut found.host_key_alias, text.clone(), origin)
        }
        ("stricthostkeychecking", Value::Text(text)) => {
            first(&mut found.strict_host_key_checking, text.clone(), origin)
        }
        ("connecttimeout", Value::Seconds(seconds)) => first(
            &mut found.connect_timeout,
            Duration::from_secs(*seconds),
            origin,
        ),
        ("serveraliveinterval", Value::Seconds(seconds)) => first(
            &mut found.server_alive_interval,
            Duration::from_secs(*seconds),
            origin,
        ),
        ("serveralivecountmax", Value::Count(count)) => {
            first(&mut found.server_alive_count_max, *count, origin)
        }
        _ => {}
    }
}

/// Reads files, following `Include`.
struct Reader<'a> {
    home: &'a Path,
    size: usize,
}

impl Reader<'_> {
    fn file(
        &mut self,
        lines: &mut Vec<Line>,
        path: &Path,
        bytes: &[u8],
        outer: &[std::sync::Arc<Condition>],
        depth: usize,
    ) -> Result<(), ConfigError> {
        let file = path.display().to_string();
        let text = std::str::from_utf8(bytes).map_err(|_| ConfigError {
            file: file.clone(),
            line: 0,
            message: "not UTF-8 text".to_string(),
        })?;
        // The conditions in force: the includer's, then this file's current Host/Match block.
        let mut block: Option<std::sync::Arc<Condition>> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let error = |message: String| ConfigError {
                file: file.clone(),
                line: number,
                message,
            };
            let Some((key, rest)) = split_key(raw) else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            let conditions = || {
                let mut all = outer.to_vec();
                all.extend(block.clone());
                all
            };
            match key.as_str() {
                "host" => {
                    let words = words(rest).map_err(error)?;
                    if words.is_empty() {
                        return Err(error("`Host` needs at least one pattern".to_string()));
                    }
                    block = Some(std::sync::Arc::new(Condition::Host(
                        words.iter().flat_map(|word| patterns(word)).collect(),
                    )));
                }
                "match" => {
                    let words = words(rest).map_err(error)?;
                    block = Some(std::sync::Arc::new(Condition::Match(
                        criteria(&words).map_err(error)?,
                    )));
                }
                "include" => {
                    if depth >= INCLUDE_DEPTH {
                        return Err(error(format!(
                            "`Include` nested deeper than {INCLUDE_DEPTH} files"
                        )));
                    }
                    let words = words(rest).map_err(error)?;
                    for word in words {
                        let pattern = tilde(&word, self.home);
                        let pattern = if pattern.is_absolute() {
                            pattern
                        } else {
                            self.home.join(".ssh").join(pattern)
                        };
                        for included in glob(&pattern) {
                            let bytes = std::fs::read(&included).map_err(|read| {
                                error(format!("cannot read {}: {read}", included.display()))
                            })?;
                            self.size += bytes.len();
                            if self.size > SIZE_LIMIT {
                                return Err(error(format!(
                                    "the ssh_config and its includes exceed {} MiB",
                                    SIZE_LIMIT / 1024 / 1024
                                )));
                            }
                            self.file(lines, &included, &bytes, &conditions(), depth + 1)?;
                        }
                    }
                }
                _ if KEYS.contains(&key.as_str()) => {
                    let value = value_of(&key, rest).map_err(error)?;
                    lines.push(Line {
                        conditions: conditions(),
                        key,
                        value,
                        origin: Origin {
                            file: path.to_path_buf(),
                            line: number,
                        },
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `Key value`, `Key=value` or `Key = value`; `None` for blank and comment lines.
fn split_key(raw: &str) -> Option<(&str, &str)> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|character: char| character.is_whitespace() || character == '=')
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    Some((key, rest))
}

/// Whitespace-separated words, `"quoted words"` kept whole, a trailing `# comment` dropped.
fn words(rest: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for character in rest.chars() {
        match character {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '#' if !quoted && !in_word => break,
            character if character.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            character => {
                current.push(character);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".to_string());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// `a,b,!c` (one word) or separate words, each a pattern.
fn patterns(word: &str) -> Vec<Pattern> {
    word.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.strip_prefix('!') {
            Some(glob) => Pattern {
                negated: true,
                glob: glob.to_string(),
            },
            None => Pattern {
                negated: false,
                glob: part.to_string(),
            },
        })
        .collect()
}

fn criteria(words: &[String]) -> Result<Vec<Criterion>, String> {
    let mut criteria = Vec::new();
    let mut index = 0;
    while index < words.len() {
        let word = words[index].to_ascii_lowercase();
        let (negated, name) = match word.strip_prefix('!') {
            Some(name) => (true, name.to_string()),
            None => (false, word.clone()),
        };
        index += 1;
        if name == "all" {
            if negated {
                return Err("`Match !all` is not supported".to_string());
            }
            criteria.push(Criterion::All);
            continue;
        }
        let constructor: fn(bool, Vec<Pattern>) -> Criterion = match name.as_str() {
            "host" => Criterion::Host,
            "originalhost" => Criterion::OriginalHost,
            "user" => Criterion::User,
            "localuser" => Criterion::LocalUser,
            other => {
                return Err(format!(
                    "`Match {other}` is not supported by deploy (supported: all, host, \
                     originalhost, user, localuser); set [ssh] config = false to ignore this file"
                ));
            }
        };
        let Some(argument) = words.get(index) else {
            return Err(format!("`Match {name}` needs a pattern list"));
        };
        index += 1;
        criteria.push(constructor(negated, patterns(argument)));
    }
    if criteria.is_empty() {
        return Err("`Match` needs at least one criterion".to_string());
    }
    Ok(criteria)
}

fn value_of(key: &str, rest: &str) -> Result<Value, String> {
    // ProxyCommand takes the rest of the line as written (it is shell text).
    if key == "proxycommand" {
        if rest.is_empty() {
            return Err("`ProxyCommand` needs a command".to_string());
        }
        return Ok(Value::Text(rest.to_string()));
    }
    let words = words(rest)?;
    let single = || -> Result<String, String> {
        match words.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!("`{key}` needs a value")),
            _ => Err(format!("`{key}` takes one value")),
        }
    };
    let number = |text: &str| -> Result<u64, String> {
        text.parse::<u64>()
            .map_err(|_| format!("`{key}`: `{text}` is not a whole number"))
    };
    Ok(match key {
        "port" => {
            let text = single()?;
            match text.parse::<u16>() {
                Ok(port) if port > 0 => Value::Port(port),
                _ => return Err(format!("`Port`: `{text}` is not a port number (1-65535)")),
            }
        }
        "identitiesonly" => match single()?.to_ascii_lowercase().as_str() {
            "yes" | "true" => Value::Flag(true),
            "no" | "false" => Value::Flag(false),
            other => return Err(format!("`IdentitiesOnly`: `{other}` is not yes or no")),
        },
        "stricthostkeychecking" => {
            let text = single()?.to_ascii_lowercase();
            match text.as_str() {
                "yes" | "true" | "accept-new" | "no" | "off" | "false" | "ask" => Value::Text(text),
                other => {
                    return Err(format!(
                        "`StrictHostKeyChecking`: `{other}` is not yes, accept-new, no, off or ask"
                    ));
                }
            }
        }
        "connecttimeout" | "serveraliveinterval" => Value::Seconds(number(&single()?)?),
        "serveralivecountmax" => Value::Count(number(&single()?)?),
        "userknownhostsfile" | "globalknownhostsfile" => {
            if words.is_empty() {
                return Err(format!("`{key}` needs at least one file"));
            }
            Value::Files(words)
        }
        _ => Value::Text(single()?),
    })
}

/// Files matching `pattern` (wildcards in any component), sorted like a shell glob; a pattern
/// without wildcards names itself if it exists.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/")];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy().into_owned();
        if matches!(component, std::path::Component::RootDir) {
            continue;
        }
        let mut next = Vec::new();
        for base in &found {
            if part.contains(['*', '?']) {
                let Ok(entries) = std::fs::read_dir(base) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.starts_with('.') || part.starts_with('.'))
                    .filter(|name| wildcard_match(part.as_bytes(), name.as_bytes()))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|name| base.join(name)));
            } else {
                next.push(base.join(&part));
            }
        }
        found = next;
    }
    found.into_iter().filter(|path| path.is_file()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker(home: &Path) -> Asker<'_> {
        Asker {
            user: None,
            local_user: "me",
            home,
        }
    }

    fn query(text: &str, name: &str) -> HostConfig {
        let home = Path::new("/home/me");
        ClientConfig::parse(Path::new("/home/me/.ssh/config"), text, home)
            .expect("parses")
            .query(name, &asker(home))
    }

    #[test]
    fn first_value_wins_and_host_patterns_match() {
        let text =
            "Host web*\n  HostName %h.internal\n  Port 2222\nHost *\n  Port 22\n  User ops\n";
        let found = query(text, "web1");
        assert_eq!(found.host_name.expect("hostname").value, "web1.internal");
        let port = found.port.expect("port");
        assert_eq!(port.value, 2222);
        assert_eq!(port.origin.to_string(), "/home/me/.ssh/config:3");
        assert_eq!(found.user.expect("user").value, "ops");
        assert_eq!(query(text, "db1").port.expect("port").value, 22);
    }

    #[test]
    fn negation_excludes_a_host() {
        let text = "Host *.example !bad.example\n  User a\nHost *\n  User b\n";
        assert_eq!(query(text, "good.example").user.expect("user").value, "a");
        assert_eq!(query(text, "bad.example").user.expect("user").value, "b");
        // A negated pattern alone matches nothing.
        assert!(query("Host !x\n  User a\n", "y").user.is_none());
    }

    #[test]
    fn match_host_sees_the_host_name_and_originalhost_the_alias() {
        let text = "Host alias\n  HostName real.example\nMatch host real.example\n  Port 2200\nMatch originalhost alias\n  User u\nMatch host alias\n  IdentityFile ~/never\n";
        let found = query(text, "alias");
        assert_eq!(found.port.expect("port").value, 2200);
        assert_eq!(found.user.expect("user").value, "u");
        assert!(found.identity_files.is_empty());
    }

    #[test]
    fn match_user_and_all_and_negation() {
        let text =
            "Match user deploy\n  Port 1\nMatch !user deploy\n  Port 2\nMatch all\n  User x\n";
        let home = Path::new("/h");
        let config = ClientConfig::parse(Path::new("/h/c"), text, home).expect("parses");
        let as_deploy = Asker {
            user: Some("deploy"),
            local_user: "me",
            home,
        };
        assert_eq!(config.query("a", &as_deploy).port.expect("port").value, 1);
        assert_eq!(config.query("a", &asker(home)).port.expect("port").value, 2);
    }

    #[test]
    fn unsupported_match_criteria_are_refused_with_the_line() {
        let error = ClientConfig::parse(
            Path::new("/h/c"),
            "Host a\n  Port 1\nMatch exec \"true\"\n",
            Path::new("/h"),
        )
        .expect_err("refused");
        assert_eq!(error.line, 3);
        assert!(error.message.contains("Match exec"), "{error}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let error = ClientConfig::parse(Path::new("/h/c"), "Port x\n", Path::new("/h"))
            .expect_err("refused");
        assert_eq!((error.line, error.file.as_str()), (1, "/h/c"));
        assert!(error.to_string().starts_with("/h/c:1: `Port`"), "{error}");
    }

    #[test]
    fn identity_files_accumulate_with_tokens_and_tilde() {
        let text = "Host a\n  IdentityFile ~/.ssh/%r@%h\n  User bob\nHost *\n  IdentityFile /k/%u\n  IdentityFile /k/%u\n";
        let found = query(text, "a");
        let files: Vec<PathBuf> = found
            .identity_files
            .iter()
            .map(|setting| setting.value.clone())
            .collect();
        // %r is the user known when the line is read (none yet: the local user).
        assert_eq!(
            files,
            vec![PathBuf::from("/home/me/.ssh/me@a"), PathBuf::from("/k/me")]
        );
    }

    #[test]
    fn equals_sign_quotes_and_comments() {
        let text = "Host=a\nUser = \"x y\"\nPort=7 # seven\nProxyCommand ssh -W %h:%p b\n";
        let found = query(text, "a");
        assert_eq!(found.user.expect("user").value, "x y");
        assert_eq!(found.port.expect("port").value, 7);
        assert_eq!(
            found.proxy_command.expect("command").value,
            "ssh -W %h:%p b"
        );
    }

    #[test]
    fn include_inside_a_host_block_keeps_its_condition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path();
        std::fs::create_dir_all(home.join(".ssh/conf.d")).expect("mkdir");
        std::fs::write(
            home.join(".ssh/conf.d/1.conf"),
            "Port 11\nHost b\n  User bee\n",
        )
        .expect("write");
        std::fs::write(home.join(".ssh/conf.d/2.conf"), "Port 12\n").expect("write");
        let top = home.join(".ssh/config");
        std::fs::write(&top, "Host a\n  Include conf.d/*.conf\nHost *\n  Port 99\n")
            .expect("write");
        let config = ClientConfig::load(&top, home).expect("loads");
        let asker = asker(home);
        let a = config.query("a", &asker);
        let port = a.port.expect("port");
        assert_eq!(port.value, 11);
        assert!(port.origin.file.ends_with("1.conf"));
        assert!(a.user.is_none());
        // `b` never enters the `Host a` block, so nothing of the include applies.
        let b = config.query("b", &asker);
        assert_eq!(b.port.expect("port").value, 99);
        assert!(b.user.is_none());
    }

    #[test]
    fn a_missing_file_is_an_empty_configuration() {
        let config = ClientConfig::load(Path::new("/nonexistent/ssh/config"), Path::new("/h"))
            .expect("empty");
        assert!(config.is_empty());
    }

    #[test]
    fn include_loops_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().join("config");
        std::fs::write(&top, format!("Include {}\n", top.display())).expect("write");
        let error = ClientConfig::load(&top, dir.path()).expect_err("refused");
        assert!(error.message.contains("nested deeper"), "{error}");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"w?b*", b"web12"));
        assert!(!wildcard_match(b"w?b", b"web12"));
        assert!(wildcard_match(b"*.example.*", b"a.example.org"));
        assert!(!wildcard_match(b"a*b", b"acbd"));
    }

    #[test]
    fn tokens() {
        assert_eq!(
            expand_tokens("%h:%p %% %x", &[('h', "a"), ('p', "1")]),
            "a:1 % %x"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn home() -> &'static Path {
        Path::new("/home/me")
    }

    proptest! {
        /// Any text parses or is refused with a line inside the text; a query never panics.
        #[test]
        fn any_text_parses_or_names_a_line(text in "(?s).{0,400}", name in ".{0,20}") {
            match ClientConfig::parse(Path::new("/c"), &text, home()) {
                Ok(config) => {
                    let _ = config.query(&name, &Asker { user: None, local_user: "me", home: home() });
                }
                Err(error) => prop_assert!(error.line >= 1 && error.line <= text.lines().count()),
            }
        }

        /// Lines of known keys with arbitrary values never panic either.
        #[test]
        fn known_keys_with_any_values(
            lines in proptest::collection::vec(
                (proptest::sample::select(KEYS.to_vec()), "[ -~]{0,30}"), 0..12),
            name in "[a-z0-9.-]{1,12}",
        ) {
            let text: String = lines.iter().map(|(key, value)| format!("{key} {value}\n")).collect();
            if let Ok(config) = ClientConfig::parse(Path::new("/c"), &text, home()) {
                let _ = config.query(&name, &Asker { user: Some("u"), local_user: "me", home: home() });
            }
        }

        /// The first `Host` block whose pattern matches gives the port.
        #[test]
        fn first_matching_block_wins(
            blocks in proptest::collection::vec(("[a-c*?]{1,4}", 1u16..), 1..6),
            name in "[a-c]{1,4}",
        ) {
            let text: String = blocks
                .iter()
                .map(|(pattern, port)| format!("Host {pattern}\n  Port {port}\n"))
                .collect();
            let config = ClientConfig::parse(Path::new("/c"), &text, home()).expect("valid");
            let found = config.query(&name, &Asker { user: None, local_user: "me", home: home() });
            let expected = blocks
                .iter()
                .find(|(pattern, _)| wildcard_match(pattern.as_bytes(), name.as_bytes()))
                .map(|(_, port)| *port);
            prop_assert_eq!(found.port.map(|setting| setting.value), expected);
        }

        #[test]
        fn a_star_matches_anything_and_a_text_itself(text in "[ -~]{0,30}") {
            prop_assert!(wildcard_match(b"*", text.as_bytes()));
            let literal = text.replace(['*', '?'], "");
            prop_assert!(wildcard_match(literal.as_bytes(), literal.as_bytes()));
        }
    }
}
