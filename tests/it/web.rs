//! Webhook notifications and URL artifacts, against a real fleet and a tiny HTTP server on
//! 127.0.0.1 that records every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Fleet, deploy as deploy_command};
use crate::{Ran, run, tarball};

/// How the server answers the Nth request (0-based) for a path.
#[derive(Clone)]
enum Answer {
    Body(Vec<u8>),
    Status(u16),
    Hang,
}

#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    body: String,
}

struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// `answer(request_index, path)` decides each response.
    fn start(answer: impl Fn(usize, &str) -> Answer + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorded = recorded.clone();
                let answer = answer.clone();
                std::thread::spawn(move || serve(stream, &recorded, answer.as_ref()));
            }
        });
        Server { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

fn serve(
    stream: TcpStream,
    recorded: &Mutex<Vec<Request>>,
    answer: &(dyn Fn(usize, &str) -> Answer + Send + Sync),
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
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
    let index = {
        let mut requests = recorded.lock().expect("requests");
        requests.push(Request {
            method,
            path: path.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        requests
            .iter()
            .filter(|request| request.path == path)
            .count()
            - 1
    };
    let mut stream = stream;
    match answer(index, &path) {
        Answer::Body(bytes) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(&bytes);
        }
        Answer::Status(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Answer::Hang => std::thread::sleep(Duration::from_secs(60)),
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Runs deploy with its own artifact cache and a short HTTP timeout.
fn deploy(cache: &Path, args: &[&str]) -> Ran {
    run(deploy_command()
        .env("XDG_CACHE_HOME", cache)
        .env("DEPLOY_HTTP_TIMEOUT", "3s")
        .args(args))
}

fn push(cache: &Path, inventory: &Path, extra: &[&str]) -> Ran {
    let mut args = vec![
        "-i",
        inventory.to_str().expect("utf-8"),
        "--output",
        "json",
        "--no-progress",
        "push",
    ];
    args.extend_from_slice(extra);
    deploy(cache, &args)
}

fn live(fleet: &Fleet, index: usize) -> Option<String> {
    std::fs::read_to_string(fleet.host(index).root.join("app/current/version.txt")).ok()
}

fn artifact_bytes(fleet: &Fleet, version: &str) -> Vec<u8> {
    std::fs::read(tarball(fleet.dir(), version, &[("version.txt", version)])).expect("read tarball")
}

fn url_service(url: &str, sha256: Option<&str>, fetch: &str) -> String {
    let mut text = format!(
        "[services.app]\nbase_dir = \"app\"\nversion = \"v1\"\nartifact = \"{url}\"\nfetch = \"{fetch}\"\n"
    );
    if let Some(sha256) = sha256 {
        text.push_str(&format!("sha256 = \"{sha256}\"\n"));
    }
    text
}

#[test]
fn controller_fetch_downloads_once_and_pushes() {
    let fleet = Fleet::start(2);
    let bytes = artifact_bytes(&fleet, "v1");
    let digest = sha256(&bytes);
    let server = Server::start(move |_, _| Answer::Body(bytes.clone()));
    let url = server.url("/releases/app.tar.gz?token=SECRETTOKEN");
    let inventory = fleet.write_inventory(&url_service(&url, Some(&digest), "controller"));
    let cache = fleet.dir().join("cache");
    let ran = push(&cache, &inventory, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(live(&fleet, 0).as_deref(), Some("v1"));
    assert_eq!(live(&fleet, 1).as_deref(), Some("v1"));
    assert_eq!(server.requests().len(), 1);
    // Second run: the cache answers, the server sees nothing new.
    let again = push(&cache, &inventory, &["-vvv"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(server.requests().len(), 1, "cache hit");
    for output in [&ran.stdout, &ran.stderr, &again.stdout, &again.stderr] {
        assert!(!output.contains("SECRETTOKEN"), "secret printed: {output}");
    }
}

#[test]
fn a_wrong_sha256_is_refused_before_any_host_is_contacted() {
    let fleet = Fleet::start(1);
    let bytes = artifact_bytes(&fleet, "v1");
    let server = Server::start(move |_, _| Answer::Body(bytes.clone()));
    let inventory = fleet.write_inventory(&url_service(
        &server.url("/a.tar.gz"),
        Some(&"0".repeat(64)),
        "controller",
    ));
    let ran = push(&fleet.dir().join("cache"), &inventory, &[]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr
            .contains("0000000000000000000000000000000000000000000000000000000000000000"),
        "{}",
        ran.stderr
    );
    assert!(
        !fleet.host(0).root.join("app").exists(),
        "no host contacted"
    );
}

#[test]
fn a_404_and_a_hanging_server_fail_cleanly() {
    let fleet = Fleet::start(1);
    let server = Server::start(|_, path| {
        if path.starts_with("/missing") {
            Answer::Status(404)
        } else {
            Answer::Hang
        }
    });
    let cache = fleet.dir().join("cache");
    let inventory = fleet.write_inventory(&url_service(
        &server.url("/missing.tar.gz?sig=HIDDEN"),
        None,
        "controller",
    ));
    let ran = push(&cache, &inventory, &[]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("404"), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("HIDDEN") && !ran.stderr.contains("missing.tar.gz"),
        "{}",
        ran.stderr
    );
    let inventory = fleet.write_inventory(&url_service(
        &server.url("/slow.tar.gz"),
        None,
        "controller",
    ));
    let ran = push(&cache, &inventory, &[]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.to_lowercase().contains("timed out") || ran.stderr.contains("no answer"),
        "{}",
        ran.stderr
    );
}

#[test]
fn host_fetch_has_every_host_download_and_verify() {
    let fleet = Fleet::start(3);
    let bytes = artifact_bytes(&fleet, "v1");
    let digest = sha256(&bytes);
    let good = bytes.clone();
    // The controller's request is the first; the third request overall gets other bytes.
    let server = Server::start(move |index, _| {
        if index == 2 {
            Answer::Body(b"not the artifact".to_vec())
        } else {
            Answer::Body(good.clone())
        }
    });
    let url = server.url("/app.tar.gz?token=SECRETTOKEN");
    let inventory = fleet.write_inventory(&format!(
        "[deploy]\non_failure = \"continue\"\n{}",
        url_service(&url, Some(&digest), "host")
    ));
    let ran = push(&fleet.dir().join("cache"), &inventory, &[]);
    assert_eq!(ran.code, 1, "one host got other bytes: {ran:?}");
    assert_eq!(
        server.requests().len(),
        4,
        "the controller once, then each host"
    );
    let document = ran.json();
    let hosts = document["hosts"].as_array().expect("hosts");
    let failed: Vec<&serde_json::Value> = hosts
        .iter()
        .filter(|host| host["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{document:#}");
    let error = failed[0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains(&format!("expected {digest}, got ")),
        "{error}"
    );
    assert!(error.contains(&sha256(b"not the artifact")), "{error}");
    assert_eq!(
        hosts.iter().filter(|host| host["result"] == "ok").count(),
        2
    );
    for host in hosts.iter().filter(|host| host["result"] == "ok") {
        assert_eq!(host["bytes"], 0, "the controller uploaded nothing");
    }
    assert!(!ran.stdout.contains("SECRETTOKEN") && !ran.stderr.contains("SECRETTOKEN"));
    // fetch = "host" without sha256 is an inventory error.
    let inventory = fleet.write_inventory(&url_service(&url, None, "host"));
    assert_eq!(push(&fleet.dir().join("cache"), &inventory, &[]).code, 2);
}

#[test]
fn the_webhook_receives_the_summary_and_never_leaks_its_token() {
    let fleet = Fleet::start(2);
    let server = Server::start(|_, _| Answer::Status(204));
    let hook = server.url("/hooks/SECRETTOKEN?key=OTHERSECRET");
    let inventory = fleet.write_inventory(&format!(
        "[notify]\nwebhook = \"{hook}\"\n\n[services.app]\nbase_dir = \"app\"\n"
    ));
    let artifact: PathBuf = tarball(fleet.dir(), "v1", &[("version.txt", "v1")]);
    let cache = fleet.dir().join("cache");
    let ran = push(
        &cache,
        &inventory,
        &[
            "--version",
            "v1",
            "--artifact",
            artifact.to_str().expect("utf-8"),
            "-vvv",
        ],
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON body");
    assert_eq!(body["action"], "push");
    assert_eq!(body["result"], "ok");
    assert_eq!(body["hosts"].as_array().map(Vec::len), Some(2));
    assert!(
        body["text"].as_str().unwrap_or("").contains("ok"),
        "{body:#}"
    );
    for output in [&ran.stdout, &ran.stderr] {
        assert!(
            !output.contains("SECRETTOKEN") && !output.contains("OTHERSECRET"),
            "{output}"
        );
    }
    // A dry run notifies nobody.
    let dry = push(
        &cache,
        &inventory,
        &[
            "--version",
            "v1",
            "--artifact",
            artifact.to_str().expect("utf-8"),
            "--dry-run",
        ],
    );
    assert_eq!(dry.code, 0);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_hanging_webhook_does_not_stall_or_fail_the_run() {
    let fleet = Fleet::start(1);
    let server = Server::start(|_, _| Answer::Hang);
    let hook = server.url("/hooks/SECRETTOKEN");
    let inventory = fleet.write_inventory(&format!(
        "[notify]\nwebhook = \"{hook}\"\n\n[services.app]\nbase_dir = \"app\"\n"
    ));
    let artifact = tarball(fleet.dir(), "v1", &[("version.txt", "v1")]);
    let ran = push(
        &fleet.dir().join("cache"),
        &inventory,
        &[
            "--version",
            "v1",
            "--artifact",
            artifact.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        ran.code, 0,
        "the webhook does not change the exit code: {ran:?}"
    );
    assert!(
        ran.stderr.contains("webhook"),
        "the failure is logged: {}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("SECRETTOKEN"), "{}", ran.stderr);
    assert_eq!(live(&fleet, 0).as_deref(), Some("v1"));
}
