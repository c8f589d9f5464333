//! A counting TCP relay: listens on a free port of 127.0.0.1 and forwards every connection to a
//! host's sshd, counting the bytes in each direction. It measures what a push really sent,
//! outside the tool. The inventory points at the relay's port; the host's key is trusted under
//! the relay's address (`Relay::known_hosts_line`), so host keys are verified as always.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use super::TestHost;

/// Bytes relayed so far, per direction.
#[derive(Default)]
struct Counters {
    /// Client (deploy) to host.
    sent: AtomicU64,
    /// Host to client.
    received: AtomicU64,
}

pub struct Relay {
    /// The port the relay listens on (127.0.0.1).
    pub port: u16,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay in front of `host`'s sshd.
    pub fn start(host: &TestHost) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a relay port");
        let port = listener.local_addr().expect("relay address").port();
        let target = host.port;
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let counters = Arc::clone(&counters);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    pump(&client, &server, Arc::clone(&counters), true);
                    pump(&server, &client, Arc::clone(&counters), false);
                }
            })
        };
        Relay {
            port,
            counters,
            stop,
            accept: Some(accept),
        }
    }

    /// Bytes the client sent to the host since the start (or the last `reset`).
    pub fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::SeqCst)
    }

    /// Bytes the host sent to the client.
    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.counters.sent.store(0, Ordering::SeqCst);
        self.counters.received.store(0, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread; it sees the flag and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Copies `from` to `to` on a thread of its own, counting into `sent` or `received`.
fn pump(from: &TcpStream, to: &TcpStream, counters: Arc<Counters>, upstream: bool) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let count = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(count) => count,
            };
            if to.write_all(&buffer[..count]).is_err() {
                break;
            }
            let counter = if upstream {
                &counters.sent
            } else {
                &counters.received
            };
            counter.fetch_add(count as u64, Ordering::SeqCst);
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}
