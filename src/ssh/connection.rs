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
use super::endpoint::Endpoint;
use super::error::SshError;
use super::host_key::{Trust, Verifier};
use super::known_hosts;

/// The most stdout one remote command may return before it is treated as hostile.
const STDOUT_LIMIT: usize = 64 * 1024 * 1024;
/// Stderr beyond this is cut (the head is kept: that is where the error usually is).
const STDERR_LIMIT: usize = 256 * 1024;
/// Size of the buffer the upload reads from its source (never `channel.data(reader)`: 8 KiB packets).
/// 64 KiB: two full 32 KiB SSH packets per read, small enough that a hundred uploads in flight
/// stay within tens of MiB (the reader and this buffer each hold one chunk per upload).
const UPLOAD_CHUNK: usize = 64 * 1024;

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

/// Connection factory shared by all hosts of a run: one config, one cache of decrypted keys,
/// and one connection per host, shared by every service working on it at the same time.
pub struct Connector {
    trust: Trust,
    connect_timeout: Duration,
    keys: KeyCache,
    /// Per host name: the shared connection (dropped when its last user is done), or why it
    /// could not be made (not tried again in this run).
    shared: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Shared>>>>,
}

/// The state of one host's shared connection.
#[derive(Default)]
enum Shared {
    #[default]
    None,
    Live(std::sync::Weak<Session>),
    Failed(String),
}

impl Connector {
    pub fn new(trust: Trust, connect_timeout: Duration) -> Self {
        Connector {
            trust,
            connect_timeout,
            keys: KeyCache::default(),
            shared: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The host's connection: the one another service of this run already holds to it, or a
    /// new one (see `connect`). Each user gets channels of its own on it; the connection ends
    /// when its last user releases it (`Session::release`).
    pub async fn connect_shared(&self, endpoint: &Endpoint) -> Result<Arc<Session>, SshError> {
        let slot = {
            let mut shared = self
                .shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shared.entry(endpoint.name.clone()).or_default().clone()
        };
        // Held while connecting: a second service waits and then shares the connection (or
        // its failure: an unreachable host costs one connect_timeout per run, not one per service).
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
        match self.connect(endpoint).await {
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

    /// Connects, verifies the host key and authenticates, all under `connect_timeout`.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<Session, SshError> {
        let timeout = self.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_inner(endpoint)).await {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout {
                what: format!(
                    "connecting to {}:{} (TCP, handshake and authentication)",
                    endpoint.address, endpoint.port
                ),
                after: timeout,
            }),
        }
    }

    async fn connect_inner(&self, endpoint: &Endpoint) -> Result<Session, SshError> {
        let address = format!("{}:{}", endpoint.address, endpoint.port);
        let config = Arc::new(self.config_for(endpoint));
        let stream = tokio::net::TcpStream::connect((endpoint.address.as_str(), endpoint.port))
            .await
            .map_err(|error| SshError::Connect {
                address: address.clone(),
                message: error.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let verifier = Verifier {
            endpoint: endpoint.clone(),
            trust: self.trust.clone(),
        };
        let mut handle = client::connect_stream(config, stream, verifier).await?;
        authenticate(&self.keys, &mut handle, endpoint).await?;
        Ok(Session { handle })
    }

    fn config_for(&self, endpoint: &Endpoint) -> client::Config {
        let mut config = client::Config {
            nodelay: true,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
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
        let recorded = known_hosts::recorded_algorithms(
            &self.trust.known_hosts,
            &endpoint.address,
            endpoint.port,
        )
        .unwrap_or_default();
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
        config
    }
}

/// An authenticated connection to one host.
pub struct Session {
    handle: Handle<Verifier>,
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
        let upload = async {
            let mut sink = writer.make_writer();
            let mut buffer = vec![0u8; UPLOAD_CHUNK];
            loop {
                let count = input
                    .read(&mut buffer)
                    .await
                    .map_err(|error| SshError::Local(format!("reading the artifact: {error}")))?;
                if count == 0 {
                    break;
                }
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
