//! The one HTTP test server, on 127.0.0.1, shared by the unit tests of the HTTP client (`http`,
//! `fetch`, `notify`) and the integration tests (`tests/it/support/http.rs` includes this file):
//! a handler decides each reply (a body, a status, a redirect, a body cut short, a stall, or a
//! request that is never answered), and every request is recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a hanging reply holds its connection, so no test thread outlives a test by much.
const HANG_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

pub enum Reply {
    /// Status, extra headers, body (Content-Length is added).
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Headers announcing `.0` bytes, then only the bytes of `.1`, then close.
    Truncated(u64, Vec<u8>),
    /// Accept and read the request, then never answer.
    Hang,
    /// Send 200 headers announcing `.0` bytes and part of the body, then stall.
    StallBody(u64, Vec<u8>),
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Respond(200, Vec::new(), body.into())
    }
    pub fn status(status: u16) -> Reply {
        Reply::Respond(
            status,
            Vec::new(),
            format!("status {status}\n").into_bytes(),
        )
    }
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::Respond(
            status,
            vec![("Location".to_string(), location.to_string())],
            Vec::new(),
        )
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let requests = Arc::clone(&requests);
                    let stop = Arc::clone(&stop);
                    let handler = Arc::clone(&handler);
                    thread::spawn(move || serve(stream, &*handler, &requests, &stop));
                }
            });
        }
        TestServer {
            addr,
            requests,
            stop,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&stream) else {
        return;
    };
    requests.lock().unwrap().push(request.clone());
    let mut stream = stream;
    let head = |status: u16, length: u64, extra: &[(String, String)]| {
        let mut head = format!(
            "HTTP/1.1 {status} Canned\r\nContent-Length: {length}\r\nConnection: close\r\n"
        );
        for (key, value) in extra {
            head.push_str(&format!("{key}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    };
    match handler(&request) {
        Reply::Respond(status, extra, body) => {
            let _ = stream.write_all(&head(status, body.len() as u64, &extra));
            let _ = stream.write_all(&body);
        }
        Reply::Truncated(length, body) => {
            let _ = stream.write_all(&head(200, length, &[]));
            let _ = stream.write_all(&body);
        }
        Reply::Hang => hang(stop),
        Reply::StallBody(length, body) => {
            let _ = stream.write_all(&head(200, length, &[]));
            let _ = stream.write_all(&body);
            let _ = stream.flush();
            hang(stop);
        }
    }
    let _ = stream.flush();
}

fn hang(stop: &AtomicBool) {
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < HANG_LIMIT {
        thread::sleep(Duration::from_millis(50));
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let target = words.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (key, value) = trimmed.split_once(':')?;
        headers.push((key.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
