//! Routes to a host other than a direct TCP connection: jump-host lists as `ssh -J` and
//! `ProxyJump` write them ([`parse_jumps`]), and `ProxyCommand` ([`spawn_proxy_command`]: the
//! child's stdin/stdout are the transport; it is killed when the connection that owns it ends).
//! Free of russh.

use std::process::Stdio;

use tokio::io::AsyncBufReadExt;

use super::config::expand_tokens;
use super::error::SshError;

/// One hop of a jump list: `[user@]host[:port]` (or `ssh://...`); `host` may be `[v6]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHop {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for JumpHop {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(user) = &self.user {
            write!(formatter, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(formatter, "[{}]", self.host)?;
        } else {
            write!(formatter, "{}", self.host)?;
        }
        if let Some(port) = self.port {
            write!(formatter, ":{port}")?;
        }
        Ok(())
    }
}

/// Parses a jump list: hops separated by commas, the first the one connected to first.
/// `"none"` is the empty list (direct).
pub fn parse_jumps(text: &str) -> Result<Vec<JumpHop>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    if text.is_empty() {
        return Err(
            "a jump host list must not be empty (use \"none\" for a direct connection)".to_string(),
        );
    }
    text.split(',').map(parse_hop).collect()
}

fn parse_hop(hop: &str) -> Result<JumpHop, String> {
    let shown = hop.escape_debug().to_string();
    let hop = hop.trim();
    let rest = hop.strip_prefix("ssh://").unwrap_or(hop);
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{shown}` is not a jump host ([user@]host[:port])"));
    }
    let (user, host_port) = match rest.rsplit_once('@') {
        Some((user, host_port)) => {
            if user.is_empty() || user.contains(['/', ':']) {
                return Err(format!("`{shown}`: the user before `@` is not valid"));
            }
            (Some(user.to_string()), host_port)
        }
        None => (None, rest),
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("`{shown}`: `[` without `]`"));
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("`{shown}`: unexpected text after `]`")),
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '[', ']']) {
        return Err(format!("`{shown}`: the host name is not valid"));
    }
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => {
                return Err(format!(
                    "`{shown}`: `{port}` is not a port number (1-65535)"
                ));
            }
        },
    };
    Ok(JumpHop {
        user,
        host: host.to_string(),
        port,
    })
}

/// What `%h %p %r %n` stand for in a ProxyCommand.
pub(super) struct ProxyTokens<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub original: &'a str,
}

/// `%h %p %r %n %%` expanded (OpenSSH's tokens for ProxyCommand that `deploy` knows).
pub(super) fn expand_proxy_command(command: &str, tokens: &ProxyTokens<'_>) -> String {
    let port = tokens.port.to_string();
    expand_tokens(
        command,
        &[
            ('h', tokens.host),
            ('p', &port),
            ('r', tokens.user),
            ('n', tokens.original),
        ],
    )
}

/// A running ProxyCommand: its stdout/stdin joined as the transport stream.
pub(super) struct ProxyProcess {
    pub child: tokio::process::Child,
    pub stream: tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
}

/// Starts `sh -c 'exec <command>'` (already expanded), as OpenSSH does: the shell is replaced
/// by the command, so that killing the child kills the proxy itself, not a shell that leaves
/// it running until it notices its pipes closed. Its stderr lines go to the log (escaped, at
/// info level, under the host's name). The child is killed when dropped.
pub(super) fn spawn_proxy_command(command: &str, host: &str) -> Result<ProxyProcess, SshError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| SshError::Connect {
            address: format!("ProxyCommand `{command}`"),
            message: format!("cannot start it: {error}"),
        })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(SshError::Local(
            "ProxyCommand started without its pipes".to_string(),
        ));
    };
    if let Some(stderr) = child.stderr.take() {
        let host = host.to_string();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(host = %host, "proxy command: {}", line.escape_debug());
            }
        });
    }
    Ok(ProxyProcess {
        child,
        stream: tokio::io::join(stdout, stdin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(user: Option<&str>, host: &str, port: Option<u16>) -> JumpHop {
        JumpHop {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn jump_lists() {
        assert_eq!(
            parse_jumps("ops@bastion:2222,inner").expect("parses"),
            vec![
                hop(Some("ops"), "bastion", Some(2222)),
                hop(None, "inner", None)
            ]
        );
        assert_eq!(
            parse_jumps("ssh://u@[::1]:22").expect("parses"),
            vec![hop(Some("u"), "::1", Some(22))]
        );
        assert_eq!(parse_jumps("none").expect("parses"), vec![]);
        assert_eq!(
            parse_jumps("ops@bastion:2222,inner")
                .expect("parses")
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["ops@bastion:2222", "inner"]
        );
    }

    #[test]
    fn bad_jump_lists() {
        for bad in [
            "", "a,,b", "a:0", "a:x", "[::1", "@a", "a b", "[::1]x", "a:70000",
        ] {
            assert!(parse_jumps(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn proxy_command_tokens() {
        let tokens = ProxyTokens {
            host: "10.0.0.1",
            port: 2222,
            user: "ops",
            original: "web1",
        };
        assert_eq!(
            expand_proxy_command("ssh -W %h:%p %r@b # %n %%", &tokens),
            "ssh -W 10.0.0.1:2222 ops@b # web1 %"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text parses or is refused; never a panic.
        #[test]
        fn any_jump_list_parses_or_is_refused(text in "(?s).{0,80}") {
            let _ = parse_jumps(&text);
        }

        /// A valid hop written back (`Display`) parses to itself.
        #[test]
        fn hops_round_trip(
            user in proptest::option::of("[a-z][a-z0-9_-]{0,8}"),
            host in prop_oneof!["[a-z][a-z0-9.-]{0,12}", Just("::1".to_string()), Just("10.0.0.1".to_string())],
            port in proptest::option::of(1u16..),
        ) {
            let hop = JumpHop { user, host, port };
            let parsed = parse_jumps(&hop.to_string()).expect("valid hop");
            prop_assert_eq!(parsed, vec![hop]);
        }
    }
}
