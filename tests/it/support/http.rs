//! The one HTTP server of the integration tests, on 127.0.0.1: serves files, answers 404 for
//! anything else, lets a test configure other replies, and records every request (for counts
//! and webhook bodies). One request per connection (`Connection: close`).
//!
//! A server that never answers is not an HTTP server: use [`super::Blackhole`] (accepts, then
//! never sends a byte).
//!
//! ```ignore
//! let server = HttpServer::new()
//!     .file("/app.tar.gz", bytes)
//!     .reply(|_, nth| (nth == 2).then(|| Reply::Body(b"other bytes".to_vec())))
//!     .start();
//! let url = server.url("/app.tar.gz?token=SECRET");
//! assert_eq!(server.count("/app.tar.gz"), 4);
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A reply of the server.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status, empty body.
    Status(u16),
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target: path and query (`/releases/app.tar.gz?token=...`).
    pub target: String,
    pub body: String,
}

impl Request {
    /// The target without its query.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }
}

/// Decides a reply for a request and the number of earlier requests to the same path (0 for
/// the first); `None` falls back to the files (or 404).
type Replier = dyn Fn(&Request, usize) -> Option<Reply> + Send + Sync;

/// An [`HttpServer`] being configured; [`HttpServerBuilder::start`] starts it.
pub struct HttpServerBuilder {
    files: HashMap<String, Vec<u8>>,
    replier: Option<Box<Replier>>,
}

impl HttpServerBuilder {
    /// `GET path` (any query) answers 200 with `bytes`.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> HttpServerBuilder {
        self.files.insert(path.to_string(), bytes.into());
        self
    }

    /// `replier(request, nth)` answers first; `None` falls back to the files, then 404. `nth`
    /// counts the earlier requests to the same path (query ignored).
    pub fn reply(
        mut self,
        replier: impl Fn(&Request, usize) -> Option<Reply> + Send + Sync + 'static,
    ) -> HttpServerBuilder {
        self.replier = Some(Box::new(replier));
        self
    }

    pub fn start(self) -> HttpServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("could not bind 127.0.0.1:0 for the HTTP server");
        let address = listener
            .local_addr()
            .expect("could not read the HTTP server's address");
        let shared = Arc::new(Shared {
            files: self.files,
            replier: self.replier,
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name(format!("http-{}", address.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accepting.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let serving = Arc::clone(&accepting);
                    thread::spawn(move || serve(stream, &serving));
                }
            })
            .expect("could not spawn the HTTP server thread");
        HttpServer { address, shared }
    }
}

/// A running test HTTP server; stopped when dropped.
pub struct HttpServer {
    address: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    files: HashMap<String, Vec<u8>>,
    replier: Option<Box<Replier>>,
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
}

impl HttpServer {
    /// A server with no files and no configured replies (every request: 404).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> HttpServerBuilder {
        HttpServerBuilder {
            files: HashMap::new(),
            replier: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `http://127.0.0.1:PORT<path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.address)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// The number of requests so far to `path` (query ignored).
    pub fn count(&self, path: &str) -> usize {
        self.shared
            .requests
            .lock()
            .expect("requests")
            .iter()
            .filter(|request| request.path() == path)
            .count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
    }
}

fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(clone) => clone,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let request = Request {
        method,
        target,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let nth = {
        let mut requests = shared.requests.lock().expect("requests");
        let nth = requests
            .iter()
            .filter(|earlier| earlier.path() == request.path())
            .count();
        requests.push(request.clone());
        nth
    };
    let reply = shared
        .replier
        .as_ref()
        .and_then(|replier| replier(&request, nth))
        .or_else(|| shared.files.get(request.path()).cloned().map(Reply::Body))
        .unwrap_or(Reply::Status(404));
    let mut stream = stream;
    match reply {
        Reply::Body(bytes) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(&bytes);
        }
        Reply::Status(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Canned\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
    let _ = stream.flush();
}
