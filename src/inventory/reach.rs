//! How hosts are reached (SPEC §2 `[ssh]`): the OpenSSH client config file to read
//! (`config`), jump hosts (`proxy_jump`, in `[ssh]` and per host), `proxy_command`, the host
//! `address` rules (IPv6 in brackets), and which connection values the inventory set itself
//! (an inventory value wins over the ssh_config, which wins over the built-in default).

use std::path::PathBuf;

use toml::Spanned;

use super::location::{InventoryError, Parser, shown};
use super::raw::{RawHost, RawSsh};
use super::values::expand_tilde;

const DEFAULT_CONFIG: &str = "~/.ssh/config";

/// `[ssh]` keys about reaching hosts, and which of the other `[ssh]` keys were written.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The ssh_config to read; `None` for `config = false`.
    pub config: Option<PathBuf>,
    /// Validated jump list (`"none"` kept as written).
    pub proxy_jump: Option<String>,
    pub proxy_command: Option<String>,
    /// Which `[ssh]` keys the file sets (the others are defaults the ssh_config may override).
    pub set: SshKeysSet,
}

/// Which `[ssh]` connection keys the inventory wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct SshKeysSet {
    pub user: bool,
    pub port: bool,
    pub identity_files: bool,
    pub known_hosts: bool,
    pub host_key_policy: bool,
    pub connect_timeout: bool,
}

/// Per host: its own `proxy_jump`, and which keys the host entry wrote itself.
#[derive(Debug, Clone, Default)]
pub struct HostReach {
    pub proxy_jump: Option<String>,
    pub user: bool,
    pub port: bool,
    pub identity_files: bool,
}

impl Parser<'_> {
    pub(super) fn reach(&self, raw: &RawSsh) -> Result<Reach, InventoryError> {
        let config = match &raw.config {
            None => Some(expand_tilde(DEFAULT_CONFIG)),
            Some(value) => match value.get_ref() {
                toml::Value::Boolean(false) => None,
                toml::Value::String(path) if !path.trim().is_empty() && !path.contains('\0') => {
                    Some(expand_tilde(path))
                }
                _ => {
                    return Err(self.error_at(
                        &value.span(),
                        "ssh.config",
                        "config must be the path of an OpenSSH client config file, or false for none",
                    ));
                }
            },
        };
        let proxy_jump = raw
            .proxy_jump
            .as_ref()
            .map(|value| self.proxy_jump(value, "ssh.proxy_jump"))
            .transpose()?;
        let proxy_command = match &raw.proxy_command {
            Some(value) if value.get_ref().trim().is_empty() || value.get_ref().contains('\0') => {
                return Err(self.error_at(
                    &value.span(),
                    "ssh.proxy_command",
                    "proxy_command must be a non-empty command",
                ));
            }
            Some(value) => Some(value.get_ref().clone()),
            None => None,
        };
        if proxy_command.is_some()
            && proxy_jump
                .as_deref()
                .is_some_and(|jump| !jump.eq_ignore_ascii_case("none"))
            && let Some(value) = &raw.proxy_jump
        {
            return Err(self.error_at(
                &value.span(),
                "ssh.proxy_jump",
                "proxy_jump and proxy_command cannot both be set",
            ));
        }
        Ok(Reach {
            config,
            proxy_jump,
            proxy_command,
            set: SshKeysSet {
                user: raw.user.is_some(),
                port: raw.port.is_some(),
                identity_files: raw.identity_files.is_some(),
                known_hosts: raw.known_hosts.is_some(),
                host_key_policy: raw.host_key_policy.is_some(),
                connect_timeout: raw.connect_timeout.is_some(),
            },
        })
    }

    pub(super) fn host_reach(&self, raw: &RawHost, key: &str) -> Result<HostReach, InventoryError> {
        Ok(HostReach {
            proxy_jump: raw
                .proxy_jump
                .as_ref()
                .map(|value| self.proxy_jump(value, &format!("{key}.proxy_jump")))
                .transpose()?,
            user: raw.user.is_some(),
            port: raw.port.is_some(),
            identity_files: raw.identity_files.is_some(),
        })
    }

    fn proxy_jump(&self, value: &Spanned<String>, key: &str) -> Result<String, InventoryError> {
        crate::ssh::parse_jumps(value.get_ref())
            .map_err(|message| self.error_at(&value.span(), key, message))?;
        Ok(value.get_ref().trim().to_string())
    }

    /// A host name, an IPv4 address, or an IPv6 address (bare, or in brackets as `[::1]`, with
    /// an optional `%zone`); brackets are removed.
    pub(super) fn address(
        &self,
        value: &Spanned<String>,
        key: &str,
    ) -> Result<String, InventoryError> {
        let address = value.get_ref();
        if address.is_empty()
            || address
                .chars()
                .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err(self.error_at(
                &value.span(),
                key,
                "address must be a non-empty host name or IP address without whitespace",
            ));
        }
        if let Some(inner) = address.strip_prefix('[') {
            return match inner.strip_suffix(']') {
                Some(inner) if is_ipv6(inner) => Ok(inner.to_string()),
                _ => Err(self.error_at(
                    &value.span(),
                    key,
                    format!(
                        "`{}` is not an IPv6 address in brackets (write the port in `port`, not in the address)",
                        shown(address)
                    ),
                )),
            };
        }
        if address.contains(':') && !is_ipv6(address) {
            return Err(self.error_at(
                &value.span(),
                key,
                format!(
                    "`{}` is neither a host name nor an IP address (write the port in `port`, not in the address)",
                    shown(address)
                ),
            ));
        }
        Ok(address.clone())
    }
}

/// An IPv6 address with an optional `%zone` (interface name or number).
fn is_ipv6(text: &str) -> bool {
    let (address, zone) = match text.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (text, None),
    };
    address.parse::<std::net::Ipv6Addr>().is_ok()
        && zone.is_none_or(|zone| {
            !zone.is_empty()
                && zone
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || "._-".contains(character))
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::inventory::parse_str;

    fn host_line(address: &str) -> String {
        format!("[[hosts]]\nname = \"a\"\naddress = \"{address}\"\n")
    }

    #[test]
    fn ipv6_addresses_in_brackets_are_accepted() {
        for (written, kept) in [
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[fe80::1%eth0]", "fe80::1%eth0"),
            ("10.0.0.1", "10.0.0.1"),
            ("web1.example", "web1.example"),
        ] {
            let inventory = parse_str(&host_line(written), Path::new("/i.toml")).expect(written);
            assert_eq!(inventory.hosts[0].address, kept);
        }
    }

    #[test]
    fn bad_addresses_are_refused_with_the_key() {
        for bad in ["[::1", "[web1]", "web1:22", "[::1]:22", "[fe80::1%]"] {
            let error = parse_str(&host_line(bad), Path::new("/i.toml"))
                .expect_err(bad)
                .to_string();
            assert!(error.contains("hosts[0].address"), "{bad}: {error}");
        }
    }

    #[test]
    fn reach_keys() {
        let text = format!(
            "[ssh]\nconfig = false\nproxy_jump = \"ops@b:2222,c\"\nuser = \"u\"\n{}proxy_jump = \"none\"\nport = 2\n",
            host_line("a")
        );
        let inventory = parse_str(&text, Path::new("/i.toml")).expect("parses");
        let reach = &inventory.ssh.reach;
        assert!(reach.config.is_none());
        assert_eq!(reach.proxy_jump.as_deref(), Some("ops@b:2222,c"));
        assert!(reach.set.user && !reach.set.port);
        let host = &inventory.hosts[0].reach;
        assert_eq!(host.proxy_jump.as_deref(), Some("none"));
        assert!(host.port && !host.user);
    }

    #[test]
    fn bad_reach_keys_name_the_key() {
        for (text, key) in [
            ("[ssh]\nconfig = true\n", "ssh.config"),
            ("[ssh]\nproxy_jump = \"a:0\"\n", "ssh.proxy_jump"),
            ("[ssh]\nproxy_command = \" \"\n", "ssh.proxy_command"),
            (
                "[ssh]\nproxy_command = \"nc %h %p\"\nproxy_jump = \"b\"\n",
                "ssh.proxy_jump",
            ),
        ] {
            let error = parse_str(&format!("{text}{}", host_line("a")), Path::new("/i.toml"))
                .expect_err(text)
                .to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
        let error = parse_str(
            &format!("{}proxy_jump = \"\"\n", host_line("a")),
            Path::new("/i.toml"),
        )
        .expect_err("empty jump")
        .to_string();
        assert!(error.contains("hosts[0].proxy_jump"), "{error}");
    }
}
