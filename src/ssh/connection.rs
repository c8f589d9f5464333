//! Connections: the [`Connector`] (one connection per host, shared by the services of a run,
//! made under a deadline), the [`Session`] on it, and running remote commands: plain, with
//! stdin streamed from a reader with backpressure, and [`Held`] open (for locks). Results come
//! back as [`Output`] or [`SshError`], never as russh types.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::Algorithm;
use russh::{ChannelMsg, Disconnect};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::auth::{KeyCache, authenticate};
use super::endpoint::{Endpoint, Route};
use super::error::SshError;
use super::host_key::{self, Trust, Verifier};
use super::known_hosts::{self, KnownHosts};
use super::proxy::spawn_proxy_command;

/// The most stdout one remote command may return before it is treated as hostile.
const STDOUT_LIMIT: usize = 64 * 1024 * 1024;
/// Stderr beyond this is cut (the head is kept: that is where the error usually is).
const STDERR_LIMIT: usize = 256 * 1024;
/// Size of the buffer the upload reads from its source (never `channel.data(reader)`: 8 KiB packets).
/// 32 KiB: one full SSH packet per read; measured against 64 KiB on 500 hosts at `-j 100`, about
/// 10 MiB less peak memory (the reader, this buffer and russh's queue each hold a chunk per
/// upload in flight), and the kernel's socket buffer still keeps the pipe full.
const UPLOAD_CHUNK: usize = 32 * 1024;
/// Upload bytes handed to russh that its connection has not yet written to the socket, at
/// most, before the next chunk is handed over (see [`Wire`]). russh encrypts every queued
/// message into one write buffer per connection and keeps that buffer at its largest size for
/// the connection's life; unpaced, an upload grows it to ~0.5 MiB (ten queued 32 KiB packets,
/// doubled). Paced, it stays near one chunk, and the kernel's socket buffer keeps the pipe full.
const UPLOAD_AHEAD: u64 = UPLOAD_CHUNK as u64;

/// What a finished remote command produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: Option<u32>,
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// A one-paragraph description of a failure: exit status and the trimmed stderr.
    pub fn failure_text(&self) -> String {
        let stderr = String::from_utf8_lossy(&self.stderr);
        let stderr = stderr.trim();
        let status = match (&self.status, &self.signal) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_string(),
        };
        if stderr.is_empty() {
            status
        } else {
            format!("{status}: {stderr}")
        }
    }
}

/// Connection factory shared by all hosts of a run: one cache of decrypted keys, a bound on
/// the handshakes in flight, and one connection per host (and per jump-host chain), shared by
/// every user of it at the same time.
pub struct Connector {
    /// The known_hosts files, each read and parsed once per run, shared by every host.
    known: Arc<KnownHosts>,
    keys: KeyCache,
    /// Handshakes in flight (TCP connect to authenticated), so a run does not stampede a
    /// bastion or trip sshd's `MaxStartups`.
    handshakes: tokio::sync::Semaphore,
    /// Per host name or jump chain: the shared connection (dropped when its last user is
    /// done), or why it could not be made (not tried again in this run).
    shared: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Shared>>>>,
}

/// The state of one shared connection.
#[derive(Default)]
enum Shared {
    #[default]
    None,
    Live(std::sync::Weak<Session>),
    Failed(String),
}

/// First pause before another try after a dropped handshake; doubled each time, jittered.
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two tries.
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(1);

impl Connector {
    /// `handshakes`: at most this many connections are being set up at once.
    pub fn new(handshakes: usize) -> Self {
        Connector {
            known: Arc::new(KnownHosts::default()),
            keys: KeyCache::default(),
            handshakes: tokio::sync::Semaphore::new(handshakes.max(1)),
            shared: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Reads (and, on a terminal, asks the passphrase of) every identity file of `endpoints`
    /// now, before any progress display is drawn, so a prompt is never drawn over.
    pub async fn unlock_identities(&self, endpoints: &[Endpoint]) {
        let mut seen = std::collections::HashSet::new();
        for endpoint in endpoints {
            let hops = match &endpoint.route {
                Route::Jump(hops) => hops.as_slice(),
                _ => &[],
            };
            for path in hops
                .iter()
                .chain(std::iter::once(endpoint))
                .flat_map(|endpoint| endpoint.identity_files.iter())
            {
                if seen.insert(path.clone()) {
                    self.keys.preload(path).await;
                }
            }
        }
    }

    /// The host's connection: the one another service of this run already holds to it, or a
    /// new one (see `connect`). Each user gets channels of its own on it; the connection ends
    /// when its last user releases it (`Session::release`).
    pub async fn connect_shared(&self, endpoint: &Endpoint) -> Result<Arc<Session>, SshError> {
        self.shared_by(format!("host {}", endpoint.name), || self.connect(endpoint))
            .await
    }

    /// The connection kept under `key`: the live one, the earlier failure, or a new one.
    async fn shared_by<F, C>(&self, key: String, connect: C) -> Result<Arc<Session>, SshError>
    where
        C: FnOnce() -> F,
        F: std::future::Future<Output = Result<Session, SshError>>,
    {
        let slot = {
            let mut shared = self
                .shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shared.entry(key).or_default().clone()
        };
        // Held while connecting: a second user waits and then shares the connection (or its
        // failure: an unreachable host costs one connect_timeout per run, not one per user).
        let mut current = slot.lock().await;
        match &*current {
            Shared::Live(weak) => {
                if let Some(session) = weak.upgrade()
                    && !session.handle.is_closed()
                {
                    return Ok(session);
                }
            }
            Shared::Failed(error) => return Err(SshError::Earlier(error.clone())),
            Shared::None => {}
        }
        match connect().await {
            Ok(session) => {
                let session = Arc::new(session);
                *current = Shared::Live(Arc::downgrade(&session));
                Ok(session)
            }
            Err(error) => {
                *current = Shared::Failed(error.to_string());
                Err(error)
            }
        }
    }

    /// Connects (through its jump hosts or proxy command), verifies the host key and
    /// authenticates, each hop under its own `connect_timeout`.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<Session, SshError> {
        let via = match &endpoint.route {
            Route::Jump(hops) => Some(self.jump_chain(hops).await?),
            _ => None,
        };
        self.connect_one(endpoint, via).await
    }

    /// The shared connection to the last of `hops`, each reached through the one before it.
    /// A failure names the jump host and is shared by every host behind it.
    async fn jump_chain(&self, hops: &[Endpoint]) -> Result<Arc<Session>, SshError> {
        let mut via: Option<Arc<Session>> = None;
        let mut chain = String::from("jump");
        for hop in hops {
            chain.push_str(" > ");
            chain.push_str(&hop.login_key());
            let previous = via.clone();
            let session = self
                .shared_by(chain.clone(), || async {
                    self.connect_one(hop, previous)
                        .await
                        .map_err(|error| match error {
                            // Already named by the hop before it.
                            SshError::Earlier(_) | SshError::Jump { .. } => error,
                            other => SshError::Jump {
                                hop: hop.name.clone(),
                                message: other.to_string(),
                            },
                        })
                })
                .await?;
            via = Some(session);
        }
        via.ok_or_else(|| SshError::Local("empty jump host list".to_string()))
    }

    /// One SSH connection to `endpoint` over TCP, a proxy command, or a `direct-tcpip` channel
    /// of `via`. A connection dropped before authentication (sshd's `MaxStartups` under load,
    /// a reset) is tried again after a jittered pause while `connect_timeout` lasts.
    async fn connect_one(
        &self,
        endpoint: &Endpoint,
        via: Option<Arc<Session>>,
    ) -> Result<Session, SshError> {
        let timeout = endpoint.connect_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = RETRY_FIRST_PAUSE;
        loop {
            let attempt = async {
                let _permit = self.handshakes.acquire().await;
                self.handshake(endpoint, via.clone(), deadline).await
            };
            let error = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(session)) => return Ok(session),
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(SshError::Timeout {
                        what: format!(
                            "connecting to {} ({}: TCP, handshake and authentication)",
                            endpoint.name,
                            endpoint.destination()
                        ),
                        after: timeout,
                    });
                }
            };
            let jittered = pause.mul_f64(0.5 + jitter());
            let transient = matches!(error, SshError::Dropped(_))
                || matches!(&error, SshError::Connect { message, .. } if message.contains("reset"));
            if !transient || tokio::time::Instant::now() + jittered >= deadline {
                return Err(error);
            }
            tracing::debug!(host = %endpoint.name, "connection dropped before authentication ({error}); trying again");
            tokio::time::sleep(jittered).await;
            pause = (pause * 2).min(RETRY_MAX_PAUSE);
        }
    }

    async fn handshake(
        &self,
        endpoint: &Endpoint,
        via: Option<Arc<Session>>,
        deadline: tokio::time::Instant,
    ) -> Result<Session, SshError> {
        let trust = Trust {
            known_hosts: endpoint.known_hosts.clone(),
            policy: endpoint.host_key_policy,
        };
        // The host's known_hosts lines, looked up once for both the algorithm preferences and
        // the host-key decision (off the async workers: hashed lines cost an HMAC each).
        let matched = host_key::lookup(&self.known, &trust.known_hosts, endpoint).await;
        let config = Arc::new(config_for(endpoint, matched.as_deref().unwrap_or_default()));
        let verifier = Verifier {
            endpoint: endpoint.clone(),
            trust,
            known: self.known.clone(),
            matched,
        };
        let mut proxy = None;
        let wire = Arc::new(Wire::default());
        let mut handle = match (&endpoint.route, &via) {
            (_, Some(via)) => {
                let channel = via
                    .handle
                    .channel_open_direct_tcpip(
                        endpoint.address.as_str(),
                        u32::from(endpoint.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|error| SshError::Connect {
                        address: format!(
                            "{}:{} through the jump host",
                            endpoint.address, endpoint.port
                        ),
                        message: error.to_string(),
                    })?;
                client::connect_stream(config, Counted::new(channel.into_stream(), &wire), verifier)
                    .await?
            }
            (Route::Command(command), None) => {
                let process = spawn_proxy_command(command, &endpoint.name)?;
                let handle =
                    client::connect_stream(config, Counted::new(process.stream, &wire), verifier)
                        .await;
                proxy = Some(process.child);
                handle.map_err(|error| match error {
                    SshError::Dropped(message) => SshError::Connect {
                        address: format!("ProxyCommand `{command}`"),
                        message: format!("the command ended or closed its output ({message})"),
                    },
                    other => other,
                })?
            }
            _ => {
                let stream = tcp_connect(endpoint, deadline).await?;
                client::connect_stream(config, Counted::new(stream, &wire), verifier).await?
            }
        };
        authenticate(&self.keys, &mut handle, endpoint).await?;
        Ok(Session {
            handle,
            wire,
            _via: via,
            _proxy: proxy,
        })
    }
}

/// TCP to `endpoint.address:port`: every address the name resolves to, in turn, each given
/// an equal share of the time left.
async fn tcp_connect(
    endpoint: &Endpoint,
    deadline: tokio::time::Instant,
) -> Result<tokio::net::TcpStream, SshError> {
    let shown = if endpoint.address.contains(':') {
        format!("[{}]:{}", endpoint.address, endpoint.port)
    } else {
        format!("{}:{}", endpoint.address, endpoint.port)
    };
    let addresses: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((endpoint.address.as_str(), endpoint.port))
            .await
            .map_err(|error| SshError::Connect {
                address: shown.clone(),
                message: error.to_string(),
            })?
            .collect();
    let mut errors = Vec::new();
    let count = addresses.len();
    // One address: its error alone (the address is already in the message).
    let label = |address: &std::net::SocketAddr| {
        if count == 1 {
            String::new()
        } else {
            format!("{address}: ")
        }
    };
    for (index, address) in addresses.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let share = left / u32::try_from(count - index).unwrap_or(1);
        match tokio::time::timeout(share, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => errors.push(format!("{}{error}", label(&address))),
            Err(_) => errors.push(format!(
                "{}no answer within {}",
                label(&address),
                humantime::format_duration(share)
            )),
        }
    }
    Err(SshError::Connect {
        address: shown,
        message: if errors.is_empty() {
            "the name resolves to no address".to_string()
        } else {
            errors.join("; ")
        },
    })
}

/// A number in [0, 1) that differs between calls (for retry jitter; not for secrets).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn config_for(endpoint: &Endpoint, matched: &[known_hosts::Matched]) -> client::Config {
    let mut config = client::Config {
        nodelay: true,
        keepalive_interval: Some(endpoint.keepalive_interval),
        keepalive_max: endpoint.keepalive_max,
        inactivity_timeout: None,
        ..Default::default()
    };
    // AES-GCM first: measured ~20% faster than chacha20 on this class of machine.
    config.preferred.cipher = Cow::Owned(vec![
        russh::cipher::AES_256_GCM,
        russh::cipher::AES_128_GCM,
        russh::cipher::CHACHA20_POLY1305,
        russh::cipher::AES_256_CTR,
    ]);
    // The key-exchange list stays russh's default (it carries strict-kex, Terrapin protection).
    // Host-key algorithms: the types recorded for this host first, like OpenSSH, so a host
    // known by its RSA key is not asked for an ed25519 key we would then have to refuse.
    // An unreadable known_hosts file is reported by the host-key check itself.
    let recorded = known_hosts::recorded_algorithms(matched);
    if !recorded.is_empty() {
        let mut preferred: Vec<Algorithm> = config.preferred.key.to_vec();
        preferred.sort_by_key(|algorithm| {
            let family = known_hosts::algorithm_family(algorithm.as_str());
            !recorded
                .iter()
                .any(|known| known_hosts::algorithm_family(known) == family)
        });
        config.preferred.key = Cow::Owned(preferred);
    }
    // Host certificates are asked for (ahead of plain keys, as OpenSSH does) only when a
    // @cert-authority line applies to this host; a certificate from an unknown CA falls
    // back to the plain known_hosts lines for its key (see host_key).
    if known_hosts::has_authority(matched) {
        config.preferred.host_key_certificates = Cow::Owned(
            config
                .preferred
                .key
                .iter()
                .filter(|algorithm| !matches!(algorithm, Algorithm::Rsa { hash: None }))
                .cloned()
                .collect(),
        );
    }
    config
}

/// What a connection has written to its transport (TCP, proxy command, jump channel), counted
/// below russh: uploads pace themselves on it ([`UPLOAD_AHEAD`]).
#[derive(Default)]
struct Wire {
    written: std::sync::atomic::AtomicU64,
    progress: tokio::sync::Notify,
}

impl Wire {
    fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until at most `ahead` of the `handed` bytes (counted from `start`, a value of
    /// `written`) are not yet on the transport. SSH framing only adds bytes, so this never waits
    /// for bytes that will not come; it ends as russh writes what it was given.
    async fn caught_up(&self, start: u64, handed: u64, ahead: u64) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if handed.saturating_sub(self.written().saturating_sub(start)) <= ahead {
                return;
            }
            progress.await;
        }
    }
}

/// A transport that counts what russh writes to it into a [`Wire`].
struct Counted<S> {
    inner: S,
    wire: Arc<Wire>,
}

impl<S> Counted<S> {
    fn new(inner: S, wire: &Arc<Wire>) -> Self {
        Counted {
            inner,
            wire: wire.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.inner).poll_write(context, buffer);
        if let std::task::Poll::Ready(Ok(count)) = &written {
            self.wire
                .written
                .fetch_add(*count as u64, std::sync::atomic::Ordering::Release);
            self.wire.progress.notify_waiters();
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// An authenticated connection to one host.
pub struct Session {
    handle: Handle<Verifier>,
    /// What this connection has written to its transport (pacing uploads).
    wire: Arc<Wire>,
    /// The jump host connection this one runs through (kept open while this one lives).
    _via: Option<Arc<Session>>,
    /// The ProxyCommand child carrying this connection (killed when dropped).
    _proxy: Option<tokio::process::Child>,
}

impl Session {
    /// Runs `command` with no input; returns once the channel is closed.
    pub async fn run(&self, command: &str) -> Result<Output, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let (mut reader, writer) = channel.split();
        // No input: EOF at once, so a command that reads stdin does not wait for us.
        writer.eof().await?;
        collect_output(&mut reader).await
    }

    /// Runs `command` with `input` streamed to its stdin, in `UPLOAD_CHUNK` reads, while its output is
    /// drained concurrently. If the command exits before consuming its input, the upload stops at
    /// once. `progress` is called with the running total of bytes sent.
    pub async fn run_with_input<R>(
        &self,
        command: &str,
        mut input: R,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<(Output, u64), SshError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let (mut reader, writer) = channel.split();
        let sent = std::sync::atomic::AtomicU64::new(0);
        let start = self.wire.written();
        let upload = async {
            let mut sink = writer.make_writer();
            let mut buffer = vec![0u8; UPLOAD_CHUNK];
            let mut handed = 0u64;
            loop {
                let count = input
                    .read(&mut buffer)
                    .await
                    .map_err(|error| SshError::Local(format!("reading the artifact: {error}")))?;
                if count == 0 {
                    break;
                }
                self.wire.caught_up(start, handed, UPLOAD_AHEAD).await;
                handed += count as u64;
                sink.write_all(&buffer[..count])
                    .await
                    .map_err(|error| SshError::Protocol(format!("sending data: {error}")))?;
                let total = sent.fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed)
                    + count as u64;
                progress(total);
            }
            sink.flush()
                .await
                .map_err(|error| SshError::Protocol(format!("sending data: {error}")))?;
            drop(sink);
            writer.eof().await?;
            Ok::<(), SshError>(())
        };
        let drain = collect_output(&mut reader);
        tokio::pin!(upload, drain);
        let output = tokio::select! {
            uploaded = &mut upload => {
                uploaded?;
                drain.await?
            }
            // The remote side closed first (tar failed, disk full): stop uploading now.
            finished = &mut drain => finished?,
        };
        Ok((output, sent.load(std::sync::atomic::Ordering::Relaxed)))
    }

    /// Starts `command` and reads its stdout up to a line equal to `terminator`. The command
    /// keeps running until the returned `Held` is released (its stdin is closed) or the session
    /// ends. If the command ends first, `Held::finished` holds its output.
    pub async fn hold(&self, command: &str, terminator: &str) -> Result<Held, SshError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let (mut reader, writer) = channel.split();
        let mut stdout: Vec<u8> = Vec::new();
        let mut output = Output::default();
        let marker = format!("{terminator}\n");
        let ends_with_marker = |stdout: &[u8]| {
            stdout == marker.as_bytes()
                || (stdout.ends_with(marker.as_bytes())
                    && stdout[..stdout.len() - marker.len()].ends_with(b"\n"))
        };
        loop {
            match reader.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    if stdout.len() + data.len() > STDOUT_LIMIT {
                        return Err(SshError::Command(format!(
                            "remote output exceeds {} MiB",
                            STDOUT_LIMIT / 1024 / 1024
                        )));
                    }
                    stdout.extend_from_slice(&data);
                    if ends_with_marker(&stdout) {
                        break;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    append_limited(&mut output.stderr, &data, STDERR_LIMIT)
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => output.status = Some(exit_status),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    output.signal = Some(signal_text(&signal_name))
                }
                Some(ChannelMsg::Failure) => {
                    return Err(SshError::Command(
                        "the server refused to run the command".to_string(),
                    ));
                }
                Some(_) => {}
                None => {
                    // The command ended without reaching the terminator.
                    let text = String::from_utf8_lossy(&stdout).into_owned();
                    output.stdout = stdout;
                    return Ok(Held {
                        first_line: text.lines().next().unwrap_or("").to_string(),
                        text: String::new(),
                        finished: Some(output),
                        reader,
                        writer,
                    });
                }
            }
        }
        let text = String::from_utf8_lossy(&stdout[..stdout.len() - marker.len()]).into_owned();
        let (first_line, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        Ok(Held {
            first_line: first_line.to_string(),
            text: rest.to_string(),
            finished: None,
            reader,
            writer,
        })
    }

    /// Whether the connection has ended (dropped by the server or the network).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Gives up one use of a shared connection; the last user ends it politely.
    pub async fn release(session: Arc<Session>) {
        if let Ok(session) = Arc::try_unwrap(session) {
            session.close().await;
        }
    }

    /// Ends the session politely. Dropping a `Session` ends it too.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A remote command kept running (see `Session::hold`).
pub struct Held {
    pub first_line: String,
    /// What the command printed after its first line, up to the terminator.
    pub text: String,
    /// Set when the command already ended before printing a full first line.
    pub finished: Option<Output>,
    reader: russh::ChannelReadHalf,
    writer: russh::ChannelWriteHalf<client::Msg>,
}

impl Held {
    /// Closes the command's stdin and waits for it to exit.
    pub async fn release(mut self) -> Result<Output, SshError> {
        if let Some(output) = self.finished.take() {
            return Ok(output);
        }
        self.writer.eof().await?;
        collect_output(&mut self.reader).await
    }
}

/// "TERM", "KILL", ... (the SSH names, without Rust formatting).
fn signal_text(signal: &russh::Sig) -> String {
    match signal {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

fn append_limited(buffer: &mut Vec<u8>, data: &[u8], limit: usize) {
    let room = limit.saturating_sub(buffer.len());
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}

/// Reads a channel until it closes: stdout, stderr, exit status. Never stops at the exit status
/// or EOF (OpenSSH may send them before the last data).
async fn collect_output(reader: &mut russh::ChannelReadHalf) -> Result<Output, SshError> {
    let mut output = Output::default();
    while let Some(message) = reader.wait().await {
        match message {
            ChannelMsg::Data { data } => {
                if output.stdout.len() + data.len() > STDOUT_LIMIT {
                    return Err(SshError::Command(format!(
                        "remote output exceeds {} MiB",
                        STDOUT_LIMIT / 1024 / 1024
                    )));
                }
                output.stdout.extend_from_slice(&data);
            }
            ChannelMsg::ExtendedData { data, .. } => {
                append_limited(&mut output.stderr, &data, STDERR_LIMIT)
            }
            ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                output.signal = Some(signal_text(&signal_name))
            }
            ChannelMsg::Failure => {
                return Err(SshError::Command(
                    "the server refused to run the command".to_string(),
                ));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if output.status.is_none() && output.signal.is_none() {
        return Err(SshError::Command(
            "the connection closed before the command reported an exit status".to_string(),
        ));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What russh writes through `Counted` reaches the inner transport and is counted.
    #[tokio::test]
    async fn counted_transport_counts_what_is_written() {
        let wire = Arc::new(Wire::default());
        let (near, mut far) = tokio::io::duplex(1024);
        let mut counted = Counted::new(near, &wire);
        counted.write_all(b"hello, host").await.unwrap();
        assert_eq!(wire.written(), 11);
        let mut received = [0u8; 11];
        far.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"hello, host");
    }

    /// An upload waits while more than `ahead` handed bytes are not on the wire, and goes on as
    /// soon as the transport has written enough.
    #[tokio::test]
    async fn an_upload_waits_until_the_wire_caught_up() {
        let wire = Arc::new(Wire::default());
        // Nothing handed beyond the allowance: no wait.
        tokio::time::timeout(Duration::from_secs(5), wire.caught_up(0, 64, 64))
            .await
            .expect("no wait within the allowance");
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut counted = Counted::new(near, &wire);
        let waiting = tokio::spawn({
            let wire = wire.clone();
            async move { wire.caught_up(0, 100, 10).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "90 bytes not on the wire yet");
        counted.write_all(&[0u8; 80]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "still 20 bytes behind");
        counted.write_all(&[0u8; 10]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends once the wire caught up")
            .unwrap();
        let mut received = vec![0u8; 90];
        far.read_exact(&mut received).await.unwrap();
    }
}
