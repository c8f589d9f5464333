//! The HTTP client shared by artifact downloads (`fetch`) and webhook notifications (`notify`).
//!
//! This module owns:
//! - the one use of the HTTP client crate (`ureq` 3: blocking, rustls, no OpenSSL). No other
//!   module names its types, so swapping the client touches this file only;
//! - [`redact`]: the only form in which a URL is ever shown to a person;
//! - [`get_to_writer`]: a streaming GET (fixed 64 KiB buffer, the body is never held whole) that
//!   follows at most [`MAX_REDIRECTS`] redirects and reports progress;
//! - [`post_json`]: a small JSON POST (webhooks);
//! - [`HttpError`], whose every message names the redacted URL only.
//!
//! Everything here blocks: async callers run it inside `tokio::task::spawn_blocking`. Proxies
//! are taken from the environment (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), except
//! for loopback hosts, which are always reached directly.
//!
//! # Timeouts
//! - [`get_to_writer`]: `timeout` bounds each phase that can stall: name resolution, connecting
//!   (TLS included), sending the request, waiting for the response headers, and *every single
//!   read or write* of the body. A large artifact may take longer than `timeout` in total, but a
//!   server that stops sending fails the download after `timeout` of silence.
//! - [`post_json`]: `timeout` bounds the whole exchange, end to end.
//!
//! # Secrets (SPEC §5)
//! URLs may carry credentials: `user:password@` (sent as HTTP Basic auth, never forwarded to a
//! redirect target), tokens in the path (chat webhooks) or the query (presigned store URLs). An
//! [`HttpError`] stores only `redact(url)`; details taken from the client crate's errors are
//! additionally scrubbed of every part of the raw URL, and variants whose detail may echo a URL
//! (a bad redirect `Location`, for instance) carry no detail at all.

use std::io::{self, Read, Write};
use std::time::Duration;

/// Redirects followed by [`get_to_writer`] before it gives up.
pub const MAX_REDIRECTS: u32 = 5;

const CHUNK: usize = 64 * 1024;
const USER_AGENT: &str = concat!("deploy/", env!("CARGO_PKG_VERSION"));
/// What [`redact`] puts in place of the userinfo, path, query and fragment.
const HIDDEN: &str = "/…";
/// What [`redact`] returns for text it cannot split into scheme and host.
const UNPARSABLE: &str = "<unparsable URL>";

/// A failed HTTP exchange. Every `url` field holds [`redact`]ed text, never the raw URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url}: only http:// and https:// URLs with a host are supported")]
    InvalidUrl { url: String },
    #[error("HTTP {} from {url}", status_text(*.status))]
    Status { status: u16, url: String },
    #[error("timed out after {after:?} waiting for {url}")]
    Timeout { url: String, after: Duration },
    #[error("more than {MAX_REDIRECTS} redirects from {url}")]
    TooManyRedirects { url: String },
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("TLS error talking to {url}: {reason}")]
    Tls { url: String, reason: String },
    #[error("HTTP request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("cannot store the response body from {url}: {source}")]
    Write { url: String, source: io::Error },
}

/// `default`, or the duration in `DEPLOY_HTTP_TIMEOUT` (e.g. "5s") when set: how long a
/// download may stay silent and how long a webhook may take.
pub fn configured_timeout(default: Duration) -> Duration {
    std::env::var("DEPLOY_HTTP_TIMEOUT")
        .ok()
        .and_then(|text| humantime::parse_duration(&text).ok())
        .filter(|timeout| !timeout.is_zero())
        .unwrap_or(default)
}

/// `scheme://host[:port]` of `url`, with any userinfo, path, query and fragment replaced by "/…":
/// `https://hooks:pw@chat.example.com/hooks/T0K3N?x=1` becomes `https://chat.example.com/…`.
/// A bare `https://host` or `https://host/` is returned as is (nothing is hidden there). Text that
/// does not parse as `scheme://host` yields a fixed placeholder, never a piece of the input.
/// Never panics.
pub fn redact(url: &str) -> String {
    let Some(parts) = split(url) else {
        return UNPARSABLE.to_string();
    };
    let scheme = parts.scheme.to_ascii_lowercase();
    // An '@' after the authority but before the query means the authority split is ambiguous
    // (an unencoded '/' inside a password, say): show no host at all rather than guess.
    let path = &parts.tail[..parts.tail.find(['?', '#']).unwrap_or(parts.tail.len())];
    if path.contains('@') || !valid_host_port(parts.host_port) {
        return format!("{scheme}://…");
    }
    if parts.userinfo.is_none() && (parts.tail.is_empty() || parts.tail == "/") {
        format!("{scheme}://{}{}", parts.host_port, parts.tail)
    } else {
        format!("{scheme}://{}{HIDDEN}", parts.host_port)
    }
}

/// GET `url` and stream its body into `writer`, calling `progress(bytes_so_far, content_length)`
/// once before the first byte and after every chunk. Follows up to [`MAX_REDIRECTS`] redirects.
/// Returns the number of body bytes written (the writer is flushed). A non-2xx final status, a
/// body shorter than its `Content-Length`, or `timeout` of silence is an error.
pub fn get_to_writer(
    url: &str,
    timeout: Duration,
    writer: &mut impl Write,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, HttpError> {
    check_url(url)?;
    let agent = agent(url, timeout, Mode::Download);
    let response = agent
        .get(url)
        .call()
        .map_err(|error| map_error(error, url, timeout))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(HttpError::Status {
            status,
            url: redact(url),
        });
    }
    let total = response.body().content_length();
    let mut reader = response.into_body().into_reader();
    let mut buffer = vec![0u8; CHUNK];
    let mut written = 0u64;
    progress(0, total);
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                let of = total
                    .map(|total| format!(" of {total}"))
                    .unwrap_or_default();
                return Err(HttpError::Transport {
                    url: redact(url),
                    reason: format!("the connection closed after {written}{of} bytes"),
                });
            }
            Err(error) => return Err(map_error(ureq::Error::from(error), url, timeout)),
        };
        writer
            .write_all(&buffer[..n])
            .map_err(|source| HttpError::Write {
                url: redact(url),
                source,
            })?;
        written += n as u64;
        progress(written, total);
    }
    writer.flush().map_err(|source| HttpError::Write {
        url: redact(url),
        source,
    })?;
    Ok(written)
}

/// POST `body` (already serialized JSON) to `url` with `Content-Type: application/json`, the
/// whole exchange bounded by `timeout`. Returns the 2xx status; any other status is an error.
/// Redirects are not followed (they would turn the POST into a GET and lose the body): a webhook
/// answering 3xx is reported as misconfigured.
pub fn post_json(url: &str, body: &str, timeout: Duration) -> Result<u16, HttpError> {
    check_url(url)?;
    let agent = agent(url, timeout, Mode::Post);
    let response = agent
        .post(url)
        .content_type("application/json")
        .send(body)
        .map_err(|error| map_error(error, url, timeout))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(HttpError::Status {
            status,
            url: redact(url),
        })
    }
}

enum Mode {
    Download,
    Post,
}

/// A client for one request to `url`. Proxies come from the environment (`ALL_PROXY`,
/// `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), except for loopback hosts, which are always direct.
fn agent(url: &str, timeout: Duration, mode: Mode) -> ureq::Agent {
    let t = Some(timeout);
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .timeout_resolve(t)
        .timeout_connect(t)
        .timeout_send_request(t)
        .timeout_send_body(t)
        .timeout_recv_response(t)
        .timeout_per_read(t)
        .timeout_per_write(t);
    if is_loopback(url) {
        builder = builder.proxy(None);
    }
    let builder = match mode {
        Mode::Download => builder
            .max_redirects(MAX_REDIRECTS)
            .max_redirects_will_error(true),
        Mode::Post => builder
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(t),
    };
    ureq::Agent::new_with_config(builder.build())
}

/// Turn the client crate's error into an [`HttpError`] that names `redact(raw)` only.
fn map_error(error: ureq::Error, raw: &str, timeout: Duration) -> HttpError {
    let url = redact(raw);
    match error {
        ureq::Error::Timeout(_) => HttpError::Timeout {
            url,
            after: timeout,
        },
        ureq::Error::StatusCode(status) => HttpError::Status { status, url },
        ureq::Error::TooManyRedirects => HttpError::TooManyRedirects { url },
        // Their text may quote the URL or a redirect's Location: no detail.
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => HttpError::Transport {
            url,
            reason: "the URL or a redirect's Location is not a valid http(s) URL".to_string(),
        },
        ureq::Error::RedirectFailed => HttpError::Transport {
            url,
            reason: "the server redirected a request with a body (307/308)".to_string(),
        },
        ureq::Error::HostNotFound => HttpError::Connect {
            url,
            reason: "host not found".to_string(),
        },
        ureq::Error::ConnectionFailed => HttpError::Connect {
            url,
            reason: "connection failed".to_string(),
        },
        ureq::Error::Io(error) => match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout {
                url,
                after: timeout,
            },
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable => HttpError::Connect {
                url,
                reason: scrub(&error.to_string(), raw),
            },
            _ => HttpError::Transport {
                url,
                reason: scrub(&error.to_string(), raw),
            },
        },
        ureq::Error::Tls(reason) => HttpError::Tls {
            url,
            reason: scrub(reason, raw),
        },
        ureq::Error::Rustls(error) => HttpError::Tls {
            url,
            reason: scrub(&error.to_string(), raw),
        },
        ureq::Error::Pem(_) => HttpError::Tls {
            url,
            reason: "unreadable certificate".to_string(),
        },
        other => HttpError::Transport {
            url,
            reason: scrub(&other.to_string(), raw),
        },
    }
}

fn check_url(raw: &str) -> Result<(), HttpError> {
    let ok = split(raw).is_some_and(|parts| {
        (parts.scheme.eq_ignore_ascii_case("http") || parts.scheme.eq_ignore_ascii_case("https"))
            && valid_host_port(parts.host_port)
    });
    if ok {
        Ok(())
    } else {
        Err(HttpError::InvalidUrl { url: redact(raw) })
    }
}

/// `scheme://[userinfo@]host_port<tail>`, split without allocating. `tail` starts at the first
/// '/', '?' or '#' after the scheme (or is empty).
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host_port: &'a str,
    tail: &'a str,
}

fn split(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    Some(Parts {
        scheme,
        userinfo,
        host_port,
        tail,
    })
}

fn is_loopback(url: &str) -> bool {
    let Some(parts) = split(url) else {
        return false;
    };
    let host = match parts.host_port.find(']') {
        Some(close) if parts.host_port.starts_with('[') => &parts.host_port[..=close],
        _ => parts
            .host_port
            .rsplit_once(':')
            .map_or(parts.host_port, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host == "[::1]" || host.starts_with("127.")
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with nothing that could be anything else.
fn valid_host_port(text: &str) -> bool {
    let (host_ok, port) = if let Some(inner) = text.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return false;
        };
        let (address, after) = (&inner[..close], &inner[close + 1..]);
        let address_ok = !address.is_empty()
            && address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'));
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return false,
        };
        (address_ok, port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%'));
        (host_ok, port)
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Remove every secret-bearing part of `raw` (the whole URL, its userinfo and password, its path
/// and query) from `detail`, a message from the client crate. Defence in depth: the variants that
/// pass such details on are not known to quote URLs.
fn scrub(detail: &str, raw: &str) -> String {
    let mut secrets: Vec<&str> = vec![raw.trim()];
    if let Some(parts) = split(raw) {
        if let Some(userinfo) = parts.userinfo {
            secrets.push(userinfo);
            if let Some((_, password)) = userinfo.split_once(':') {
                secrets.push(password);
            }
        }
        if parts.tail.len() > 1 {
            secrets.push(parts.tail);
        }
        if let Some((_, query)) = parts.tail.split_once('?') {
            secrets.push(query);
        }
    }
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    let mut out = detail.to_string();
    for secret in secrets.into_iter().filter(|secret| secret.len() >= 3) {
        out = out.replace(secret, "…");
    }
    out
}

fn status_text(status: u16) -> String {
    match ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for the tests of this module, `fetch` and `notify`: one
/// request per connection (`Connection: close`), canned replies, every request recorded. The
/// integration tests use the same file.
#[cfg(test)]
#[path = "http_test_server.rs"]
pub(crate) mod test_server;

#[cfg(test)]
mod tests {
    use super::test_server::{Reply, TestServer, closed_port};
    use super::*;
    use std::time::Instant;

    const T: Duration = Duration::from_secs(5);
    const SHORT: Duration = Duration::from_secs(1);

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// `http://user:pass@127.0.0.1:PORT/hooks/TOPSECRETPATH?token=SECRET`
    fn secret_url(port: u16) -> String {
        format!("http://user:pass@127.0.0.1:{port}/hooks/TOPSECRETPATH?token=SECRET")
    }

    fn assert_no_secret(text: &str) {
        for secret in ["pass", "SECRET", "TOPSECRETPATH", "token", "hooks"] {
            assert!(!text.contains(secret), "{secret:?} leaked in {text:?}");
        }
    }

    #[test]
    fn redact_keeps_scheme_host_and_port_only() {
        let cases = [
            (
                "https://chat.example.com/hooks/T0K3N",
                "https://chat.example.com/…",
            ),
            (
                "https://user:pw@chat.example.com:8443/a?token=x#frag",
                "https://chat.example.com:8443/…",
            ),
            ("https://user@host", "https://host/…"),
            ("http://host?token=x", "http://host/…"),
            ("http://host#frag", "http://host/…"),
            ("HTTPS://Host.Example", "https://Host.Example"),
            ("https://host/", "https://host/"),
            ("  https://host:80/x  ", "https://host:80/…"),
            ("http://[::1]:8080/x?y", "http://[::1]:8080/…"),
            ("http://[::1]", "http://[::1]"),
            ("http://a:b@[::1]/x", "http://[::1]/…"),
            ("s3+https://bucket.store/x", "s3+https://bucket.store/…"),
            // An unencoded '/' in a password: the authority is ambiguous, hide the host too.
            ("https://user:p/ss@host/x", "https://…"),
            ("https://user:123/ss@host/x", "https://…"),
            ("https://host:notaport/x", "https://…"),
            ("https://ho st/x", "https://…"),
            ("https:///path/only", "https://…"),
            ("https://", "https://…"),
            ("https://@", "https://…"),
            ("https://[::1/x", "https://…"),
            ("https://[zz]/x", "https://…"),
            ("https://h:123456/x", "https://…"),
            ("no scheme pass SECRET", UNPARSABLE),
            ("user:pass@host/x", UNPARSABLE),
            ("://host/x", UNPARSABLE),
            ("1http://host/x", UNPARSABLE),
            ("", UNPARSABLE),
            ("ht tp://host", UNPARSABLE),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "redact({input:?})");
        }
    }

    #[test]
    fn redact_never_panics_on_garbage() {
        let samples = [
            "https://[",
            "https://]",
            "https://:",
            "https://:::",
            "http://é@ü/ä?ö",
            "https://ü",
            "http://[é]",
            "http://[::1]é",
            "\u{0}://\u{0}",
            "a://b:",
            "x://@@@/@@",
            "://",
            "https://h:/x",
            "a://[::1]:",
        ];
        for sample in samples {
            let redacted = redact(sample);
            assert!(!redacted.is_empty());
        }
        // Every prefix and suffix of a tricky URL, on char boundaries.
        let tricky = "https://ü:sé@[::1]:80/pä?q=ö#f";
        for (i, _) in tricky.char_indices() {
            let _ = redact(&tricky[..i]);
            let _ = redact(&tricky[i..]);
        }
    }

    #[test]
    fn get_streams_the_body_and_reports_progress() {
        let body = payload(300 * 1024 + 17);
        let served = body.clone();
        let server = TestServer::start(move |_| Reply::ok(served.clone()));
        let mut out = Vec::new();
        let mut calls = Vec::new();
        let n = get_to_writer(&server.url("/a.tar.gz"), T, &mut out, |done, total| {
            calls.push((done, total))
        })
        .expect("download");
        assert_eq!(n, body.len() as u64);
        assert_eq!(out, body);
        let total = Some(body.len() as u64);
        assert_eq!(calls.first(), Some(&(0, total)));
        assert_eq!(calls.last(), Some(&(body.len() as u64, total)));
        assert!(calls.len() >= 3, "several chunks expected: {calls:?}");
        assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].target, "/a.tar.gz");
        assert!(
            requests[0]
                .header("user-agent")
                .is_some_and(|ua| ua.starts_with("deploy/"))
        );
    }

    #[test]
    fn credentials_in_the_url_are_sent_as_basic_auth() {
        let server = TestServer::start(|_| Reply::ok("x"));
        let url = format!("http://user:pass@{}/x", server.addr);
        get_to_writer(&url, T, &mut Vec::new(), |_, _| {}).expect("download");
        // base64("user:pass")
        assert_eq!(
            server.requests()[0].header("authorization"),
            Some("Basic dXNlcjpwYXNz")
        );
    }

    #[test]
    fn not_found_names_the_status_and_the_redacted_url() {
        let server = TestServer::start(|_| Reply::status(404));
        let url = secret_url(server.addr.port());
        let mut out = Vec::new();
        let error = get_to_writer(&url, T, &mut out, |_, _| {}).unwrap_err();
        assert!(matches!(error, HttpError::Status { status: 404, .. }));
        let text = error.to_string();
        assert_eq!(
            text,
            format!(
                "HTTP 404 Not Found from http://127.0.0.1:{}/…",
                server.addr.port()
            )
        );
        assert_no_secret(&text);
        assert_no_secret(&format!("{error:?}"));
        assert!(out.is_empty(), "an error body is never written");
    }

    #[test]
    fn redirects_are_followed() {
        let body = payload(1000);
        let served = body.clone();
        let server = TestServer::start(move |request| match request.target.as_str() {
            "/start" => Reply::redirect(302, "/middle"),
            "/middle" => Reply::redirect(301, "/final?sig=abc"),
            "/final?sig=abc" => Reply::ok(served.clone()),
            _ => Reply::status(404),
        });
        let mut out = Vec::new();
        get_to_writer(&server.url("/start"), T, &mut out, |_, _| {}).expect("download");
        assert_eq!(out, body);
        assert_eq!(server.count(), 3);
    }

    #[test]
    fn a_redirect_loop_stops_after_five() {
        let server = TestServer::start(|_| Reply::redirect(302, "/loop?token=SECRET"));
        let url = server.url("/loop?token=SECRET");
        let error = get_to_writer(&url, T, &mut Vec::new(), |_, _| {}).unwrap_err();
        assert!(
            matches!(error, HttpError::TooManyRedirects { .. }),
            "{error}"
        );
        assert_no_secret(&error.to_string());
        assert_eq!(server.count(), 1 + MAX_REDIRECTS as usize);
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let server = TestServer::start(|_| Reply::Hang);
        let url = secret_url(server.addr.port());
        let start = Instant::now();
        let error = get_to_writer(&url, SHORT, &mut Vec::new(), |_, _| {}).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        assert!(matches!(error, HttpError::Timeout { .. }), "{error}");
        assert!(error.to_string().contains("timed out"));
        assert_no_secret(&error.to_string());
    }

    #[test]
    fn a_body_that_stalls_times_out() {
        let server = TestServer::start(|_| Reply::StallBody(100_000, payload(1000)));
        let start = Instant::now();
        let mut out = Vec::new();
        let error = get_to_writer(&server.url("/x"), SHORT, &mut out, |_, _| {}).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        assert!(matches!(error, HttpError::Timeout { .. }), "{error}");
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let server = TestServer::start(|_| Reply::Truncated(1000, payload(10)));
        let url = secret_url(server.addr.port());
        let error = get_to_writer(&url, T, &mut Vec::new(), |_, _| {}).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("failed: the connection closed after 10 of 1000 bytes"),
            "{error}"
        );
        assert_no_secret(&error.to_string());
    }

    #[test]
    fn connection_refused_is_a_clean_error() {
        let url = secret_url(closed_port());
        let error = get_to_writer(&url, T, &mut Vec::new(), |_, _| {}).unwrap_err();
        assert!(matches!(error, HttpError::Connect { .. }), "{error}");
        assert_no_secret(&error.to_string());
        let error = post_json(&url, "{}", T).unwrap_err();
        assert_no_secret(&error.to_string());
        assert_no_secret(&format!("{error:?}"));
    }

    #[test]
    fn unsupported_or_garbage_urls_are_refused_without_a_request() {
        for url in [
            "ftp://user:pass@127.0.0.1/hooks/x?token=SECRET",
            "127.0.0.1/hooks?token=SECRET",
            "http://user:pass@/hooks?token=SECRET",
            "http://user:p/ss@127.0.0.1/hooks?token=SECRET",
        ] {
            let error = get_to_writer(url, T, &mut Vec::new(), |_, _| {}).unwrap_err();
            assert!(
                matches!(error, HttpError::InvalidUrl { .. }),
                "{url}: {error}"
            );
            assert_no_secret(&error.to_string());
            let error = post_json(url, "{}", T).unwrap_err();
            assert!(
                matches!(error, HttpError::InvalidUrl { .. }),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn a_failing_writer_is_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let server = TestServer::start(|_| Reply::ok("data"));
        let url = format!("http://u:pass@{}/x?token=SECRET", server.addr);
        let error = get_to_writer(&url, T, &mut Full, |_, _| {}).unwrap_err();
        assert!(matches!(error, HttpError::Write { .. }));
        assert!(error.to_string().contains("disk full"));
        assert_no_secret(&error.to_string());
    }

    #[test]
    fn post_json_delivers_the_body_intact() {
        let server = TestServer::start(|_| Reply::status(204));
        let body = r#"{"id":"r1","text":"deploy push r1: ok — ✓"}"#;
        let status = post_json(&server.url("/hook?token=abc"), body, T).expect("post");
        assert_eq!(status, 204);
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].target, "/hook?token=abc");
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].body, body.as_bytes());
    }

    #[test]
    fn post_json_failures_name_status_and_redacted_url() {
        let server = TestServer::start(|request| match request.target.as_str() {
            "/moved" => Reply::redirect(301, "/elsewhere"),
            _ => Reply::status(500),
        });
        let url = secret_url(server.addr.port());
        let error = post_json(&url, "{}", T).unwrap_err();
        assert!(matches!(error, HttpError::Status { status: 500, .. }));
        assert!(error.to_string().contains("500"));
        assert_no_secret(&error.to_string());
        let error = post_json(&server.url("/moved"), "{}", T).unwrap_err();
        assert!(
            matches!(error, HttpError::Status { status: 301, .. }),
            "{error}"
        );
        assert_eq!(server.count(), 2, "a POST redirect is not followed");
    }

    #[test]
    fn post_json_to_a_hanging_server_times_out() {
        let server = TestServer::start(|_| Reply::Hang);
        let url = secret_url(server.addr.port());
        let start = Instant::now();
        let error = post_json(&url, "{}", SHORT).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        assert!(matches!(error, HttpError::Timeout { .. }), "{error}");
        assert_no_secret(&error.to_string());
    }

    #[test]
    fn loopback_hosts_bypass_proxies() {
        for url in [
            "http://127.0.0.1:8080/x",
            "http://127.1.2.3/x",
            "http://LOCALHOST/x",
            "http://localhost:1",
            "http://[::1]/x",
            "http://[::1]:9/x",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://example.com/x",
            "http://10.0.0.1/x",
            "http://[::2]/x",
            "garbage",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn scrub_removes_every_part_of_the_url() {
        let raw = "https://user:hunter2@h.example/p/TOKENPATH?sig=SIGVALUE";
        let detail = format!("failed: {raw} / hunter2 / /p/TOKENPATH?sig=SIGVALUE / sig=SIGVALUE");
        let scrubbed = scrub(&detail, raw);
        for secret in ["hunter2", "TOKENPATH", "SIGVALUE"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert_eq!(
            scrub("connection reset by peer", raw),
            "connection reset by peer"
        );
    }

    #[test]
    fn every_error_display_is_free_of_secrets() {
        let raw = "http://user:pass@127.0.0.1:1/hooks/TOPSECRETPATH?token=SECRET";
        let errors = [
            map_error(ureq::Error::BadUri(raw.to_string()), raw, T),
            map_error(ureq::Error::Io(io::Error::other(raw.to_string())), raw, T),
            map_error(ureq::Error::Tls("bad"), raw, T),
            map_error(ureq::Error::HostNotFound, raw, T),
            map_error(ureq::Error::TooManyRedirects, raw, T),
            map_error(ureq::Error::StatusCode(418), raw, T),
            map_error(ureq::Error::Timeout(ureq::Timeout::Global), raw, T),
        ];
        for error in errors {
            assert_no_secret(&error.to_string());
            assert_no_secret(&format!("{error:?}"));
        }
    }
}
