//! Webhook notifications and URL artifacts, against a real fleet and a tiny HTTP server on
//! 127.0.0.1 that records every request.

use crate::support::{Blackhole, HttpServer, Reply, Scenario, sha256_hex};

/// `hosts` hosts; every run with its own artifact cache (in the fleet's directory) and a short
/// HTTP timeout.
fn scenario(hosts: usize) -> Scenario {
    let scenario = Scenario::new(hosts);
    let cache = scenario.dir().join("cache");
    scenario
        .env("XDG_CACHE_HOME", cache)
        .env("DEPLOY_HTTP_TIMEOUT", "3s")
}

/// The bytes of [`Scenario::versioned_artifact`] `version`.
fn artifact_bytes(scenario: &Scenario, version: &str) -> Vec<u8> {
    std::fs::read(scenario.versioned_artifact(version)).expect("read tarball")
}

/// The lines of `[services.app]` that fetch v1 from `url`.
fn url_service(url: &str, sha256: Option<&str>, fetch: &str) -> String {
    let mut text = format!("version = \"v1\"\nartifact = \"{url}\"\nfetch = \"{fetch}\"\n");
    if let Some(sha256) = sha256 {
        text.push_str(&format!("sha256 = \"{sha256}\"\n"));
    }
    text
}

#[test]
fn controller_fetch_downloads_once_and_pushes() {
    let scenario = scenario(2);
    let bytes = artifact_bytes(&scenario, "v1");
    let digest = sha256_hex(&bytes);
    let server = HttpServer::new()
        .file("/releases/app.tar.gz", bytes)
        .start();
    let url = server.url("/releases/app.tar.gz?token=SECRETTOKEN");
    let scenario = scenario.service(&url_service(&url, Some(&digest), "controller"));
    let ran = scenario.json(&["push"]).expect_code(0);
    assert_eq!(scenario.lives(), vec![Some("v1".to_string()); 2]);
    assert_eq!(server.requests().len(), 1);
    // Second run: the cache answers, the server sees nothing new.
    let again = scenario.json(&["push", "-vvv"]).expect_code(0);
    assert_eq!(server.requests().len(), 1, "cache hit");
    for output in [&ran.stdout, &ran.stderr, &again.stdout, &again.stderr] {
        assert!(!output.contains("SECRETTOKEN"), "secret printed: {output}");
    }
}

#[test]
fn a_wrong_sha256_is_refused_before_any_host_is_contacted() {
    let scenario = scenario(1);
    let bytes = artifact_bytes(&scenario, "v1");
    let server = HttpServer::new().file("/a.tar.gz", bytes).start();
    let scenario = scenario.service(&url_service(
        &server.url("/a.tar.gz"),
        Some(&"0".repeat(64)),
        "controller",
    ));
    let ran = scenario.json(&["push"]).expect_code(2);
    assert!(
        ran.stderr
            .contains("0000000000000000000000000000000000000000000000000000000000000000"),
        "{}",
        ran.stderr
    );
    assert!(!scenario.app(0).exists(), "no host contacted");
}

#[test]
fn a_404_and_a_hanging_server_fail_cleanly() {
    let scenario = scenario(1);
    // Serves nothing: every path is a 404.
    let server = HttpServer::new().start();
    let hanging = Blackhole::start();
    let scenario = scenario.service(&url_service(
        &server.url("/missing.tar.gz?sig=HIDDEN"),
        None,
        "controller",
    ));
    let ran = scenario.json(&["push"]).expect_code(2);
    assert!(ran.stderr.contains("404"), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("HIDDEN") && !ran.stderr.contains("missing.tar.gz"),
        "{}",
        ran.stderr
    );
    let scenario = scenario.service(&url_service(
        &format!("http://127.0.0.1:{}/slow.tar.gz", hanging.port),
        None,
        "controller",
    ));
    let ran = scenario.json(&["push"]).expect_code(2);
    assert!(
        ran.stderr.to_lowercase().contains("timed out") || ran.stderr.contains("no answer"),
        "{}",
        ran.stderr
    );
}

#[test]
fn host_fetch_has_every_host_download_and_verify() {
    let scenario = scenario(3);
    let bytes = artifact_bytes(&scenario, "v1");
    let digest = sha256_hex(&bytes);
    // The controller's request is the first; the third request overall gets other bytes.
    let server = HttpServer::new()
        .file("/app.tar.gz", bytes)
        .reply(|_, nth| (nth == 2).then(|| Reply::Body(b"not the artifact".to_vec())))
        .start();
    let url = server.url("/app.tar.gz?token=SECRETTOKEN");
    let scenario = scenario
        .deploy_table("on_failure = \"continue\"")
        .service(&url_service(&url, Some(&digest), "host"));
    let ran = scenario.json(&["push"]);
    assert_eq!(ran.code, 1, "one host got other bytes: {ran:?}");
    assert_eq!(
        server.requests().len(),
        4,
        "the controller once, then each host"
    );
    assert_eq!(server.count("/app.tar.gz"), 4);
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
    assert!(error.contains(&sha256_hex(b"not the artifact")), "{error}");
    assert_eq!(
        hosts.iter().filter(|host| host["result"] == "ok").count(),
        2
    );
    for host in hosts.iter().filter(|host| host["result"] == "ok") {
        assert_eq!(host["bytes"], 0, "the controller uploaded nothing");
    }
    assert!(!ran.stdout.contains("SECRETTOKEN") && !ran.stderr.contains("SECRETTOKEN"));
    // fetch = "host" without sha256 is an inventory error.
    let scenario = scenario
        .deploy_table("")
        .service(&url_service(&url, None, "host"));
    scenario.json(&["push"]).expect_code(2);
}

#[test]
fn the_webhook_receives_the_summary_and_never_leaks_its_token() {
    let server = HttpServer::new()
        .reply(|_, _| Some(Reply::Status(204)))
        .start();
    let hook = server.url("/hooks/SECRETTOKEN?key=OTHERSECRET");
    let scenario = scenario(2).toml(&format!("[notify]\nwebhook = \"{hook}\"\n\n"));
    let artifact = scenario.versioned_artifact("v1");
    let ran = scenario
        .push_artifact("v1", &artifact, &["-vvv"])
        .expect_code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "a start and an end event");
    assert_eq!(requests[1].method, "POST");
    let start: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON body");
    assert_eq!(start["event"], "start");
    let body: serde_json::Value = serde_json::from_str(&requests[1].body).expect("JSON body");
    assert_eq!(body["event"], "end");
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
    scenario
        .push_artifact("v1", &artifact, &["--dry-run"])
        .expect_code(0);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_hanging_webhook_does_not_stall_or_fail_the_run() {
    let hanging = Blackhole::start();
    let hook = format!("http://127.0.0.1:{}/hooks/SECRETTOKEN", hanging.port);
    let scenario = scenario(1).toml(&format!("[notify]\nwebhook = \"{hook}\"\n\n"));
    let ran = scenario.push_version("v1");
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
    assert_eq!(scenario.live(0).as_deref(), Some("v1"));
}
