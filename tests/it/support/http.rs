//! The one HTTP server of the integration tests, on 127.0.0.1: serves files, answers 404 for
//! anything else, lets a test configure other replies, and records every request (for counts
//! and webhook bodies). One request per connection (`Connection: close`). A thin builder over the one test server in
//! `src/http_test_server.rs`.
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
use std::sync::Mutex;

/// The server itself: the same file as the unit tests of the HTTP client use.
#[path = "../../../src/http_test_server.rs"]
#[allow(dead_code)]
mod engine;

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
        let files = self.files;
        let replier = self.replier;
        let seen: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
        let server = engine::TestServer::start(move |request| {
            let request = Request::from(request);
            let nth = {
                let mut seen = seen.lock().expect("request counts");
                let count = seen.entry(request.path().to_string()).or_insert(0);
                *count += 1;
                *count - 1
            };
            let reply = replier
                .as_ref()
                .and_then(|replier| replier(&request, nth))
                .or_else(|| files.get(request.path()).cloned().map(Reply::Body))
                .unwrap_or(Reply::Status(404));
            match reply {
                Reply::Body(bytes) => engine::Reply::ok(bytes),
                Reply::Status(code) => engine::Reply::Respond(code, Vec::new(), Vec::new()),
            }
        });
        HttpServer { server }
    }
}

/// A running test HTTP server; stopped when dropped.
pub struct HttpServer {
    server: engine::TestServer,
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
        self.server.addr.port()
    }

    /// `http://127.0.0.1:PORT<path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        self.server.url(path_and_query)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests().iter().map(Request::from).collect()
    }

    /// The number of requests so far to `path` (query ignored).
    pub fn count(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.path() == path)
            .count()
    }
}

impl From<&engine::Request> for Request {
    fn from(request: &engine::Request) -> Request {
        Request {
            method: request.method.clone(),
            target: request.target.clone(),
            body: String::from_utf8_lossy(&request.body).into_owned(),
        }
    }
}

fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}
