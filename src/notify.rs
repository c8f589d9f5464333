//! Webhook notifications (`[notify].webhook`, SPEC §2 and §4 step 5).
//!
//! This module owns:
//! - [`send`]: POST a JSON document, plus a one-line `"text"` field that chat tools display, to
//!   the webhook, through [`crate::http::post_json`] on a blocking thread;
//! - the two events of a changing run: [`start_document`] (`"event": "start"`: action,
//!   services, target version, operator, message, host count) when it starts, and
//!   [`end_document`] (`"event": "end"`: the run's whole `--output json` document plus operator
//!   and message) when it ends;
//! - [`start_line`] and [`summary_line`]: their one-line texts, built from the documents
//!   (service, version change, operator, message, result and counts).
//!
//! A webhook is best effort: [`send`] returns an error string for the caller to log, and the
//! caller never lets it change the run's result or exit code. It is bounded in time twice over: the
//! HTTP client's own end-to-end timeout, and a `tokio::time::timeout` around the blocking task, so
//! a server that accepts and never answers cannot stall the run. The webhook URL's path and query
//! are secrets (SPEC §5): errors name `http::redact(url)` only.

use std::time::Duration;

use serde_json::Value;

use crate::http;

/// Extra time the async guard gives the HTTP client to report its own (more precise) error.
const GRACE: Duration = Duration::from_millis(250);

/// POST `document` with `"text": text` added (the document itself is not modified; a document
/// that is not a JSON object is sent as `{"text": ..., "document": ...}`). Resolves within
/// `timeout` (plus a quarter second) whatever the server does. The error text is safe to print.
pub async fn send(
    webhook: &str,
    document: &Value,
    text: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut payload = match document {
        Value::Object(object) => Value::Object(object.clone()),
        other => serde_json::json!({ "document": other.clone() }),
    };
    if let Value::Object(object) = &mut payload {
        object.insert("text".to_string(), Value::String(text.to_string()));
    }
    let body = serde_json::to_string(&payload)
        .map_err(|error| format!("webhook: cannot serialize the summary: {error}"))?;
    let url = webhook.to_string();
    let task = tokio::task::spawn_blocking(move || http::post_json(&url, &body, timeout));
    match tokio::time::timeout(timeout + GRACE, task).await {
        Ok(Ok(Ok(_status))) => Ok(()),
        Ok(Ok(Err(error))) => Err(format!("webhook: {error}")),
        Ok(Err(_join)) => Err(format!(
            "webhook: the request to {} was aborted",
            http::redact(webhook)
        )),
        Err(_elapsed) => Err(format!(
            "webhook: no answer from {} within {timeout:?}",
            http::redact(webhook)
        )),
    }
}

/// Who runs a changing command and why: the fields both events carry.
pub struct Announcement<'a> {
    pub id: &'a str,
    pub action: &'a str,
    pub operator: &'a str,
    pub message: Option<&'a str>,
}

/// The start event: `{"event": "start", "id", "action", "services", "to", "operator",
/// "message", "hosts"}` (`to`: the version a push ships or a rollback names, else null).
pub fn start_document(
    run: &Announcement,
    services: &[String],
    to: Option<&str>,
    hosts: usize,
) -> Value {
    serde_json::json!({
        "event": "start",
        "id": run.id,
        "action": run.action,
        "services": services,
        "to": to,
        "operator": run.operator,
        "message": run.message,
        "hosts": hosts,
    })
}

/// The end event: the run's result document with `event`, `operator` and `message` added.
pub fn end_document(run: &Announcement, result: &Value) -> Value {
    let mut document = match result {
        Value::Object(object) => Value::Object(object.clone()),
        other => serde_json::json!({ "document": other.clone() }),
    };
    if let Value::Object(object) = &mut document {
        object.insert("event".to_string(), Value::from("end"));
        object.insert("operator".to_string(), Value::from(run.operator));
        object.insert("message".to_string(), Value::from(run.message));
    }
    document
}

/// ` by OPERATOR` and `, message: TEXT` from a document, when present.
fn who_and_why(document: &Value) -> (String, String) {
    let text = |name: &str| document.get(name).and_then(Value::as_str);
    let operator = text("operator")
        .map(|operator| format!(" by {operator}"))
        .unwrap_or_default();
    let message = text("message")
        .map(|message| format!(", message: {}", crate::text::shorten(message, 512)))
        .unwrap_or_default();
    (operator, message)
}

/// The start event's line: `deploy push myapp -> v2 started by alice@laptop on 3 hosts, run
/// ID, message: TEXT`. Never contains a newline.
pub fn start_line(document: &Value) -> String {
    let field = |name: &str| document.get(name).and_then(Value::as_str).unwrap_or("?");
    let services: Vec<&str> = document
        .get("services")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut line = format!("deploy {}", field("action"));
    if !services.is_empty() {
        line.push(' ');
        line.push_str(&services.join(","));
    }
    if let Some(to) = document.get("to").and_then(Value::as_str) {
        line.push_str(&format!(" -> {to}"));
    }
    let (operator, message) = who_and_why(document);
    let hosts = document.get("hosts").and_then(Value::as_u64).unwrap_or(0);
    let plural = if hosts == 1 { "host" } else { "hosts" };
    line.push_str(&format!(
        " started{operator} on {hosts} {plural}, run {}{message}",
        field("id")
    ));
    line.replace(['\n', '\r'], " ")
}

/// `v1 -> v2` from the hosts' `from` and `to` (several values comma-separated, `(none)` for
/// null); empty when no host names either.
fn version_change(hosts: &[Value]) -> String {
    let distinct = |name: &str| {
        let mut values: Vec<&str> = Vec::new();
        for host in hosts {
            let value = host.get(name).and_then(Value::as_str).unwrap_or("(none)");
            if !values.contains(&value) {
                values.push(value);
            }
        }
        values
    };
    let (from, to) = (distinct("from"), distinct("to"));
    if from.iter().chain(&to).all(|value| *value == "(none)") {
        return String::new();
    }
    let list = |values: Vec<&str>| {
        if values.len() > 4 {
            format!("{},… ({} versions)", values[..3].join(","), values.len())
        } else {
            values.join(",")
        }
    };
    format!(" {} -> {}", list(from), list(to))
}

/// One line for chat tools: `deploy push myapp v1 -> v2 by alice@laptop: ok (3 hosts, 0
/// failed), run 20261126T101500Z-ab12, message: TEXT`, with `dry run`, rolled back / skipped
/// counts, the service(s), version change, operator and message added where they apply.
/// Missing fields are shown as `?`; the line never contains a newline.
pub fn summary_line(document: &Value) -> String {
    let field = |name: &str| document.get(name).and_then(Value::as_str).unwrap_or("?");
    let hosts = document
        .get("hosts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let count = |result: &str| {
        hosts
            .iter()
            .filter(|host| host.get("result").and_then(Value::as_str) == Some(result))
            .count()
    };
    let mut services: Vec<&str> = hosts
        .iter()
        .filter_map(|host| host.get("service").and_then(Value::as_str))
        .collect();
    services.sort_unstable();
    services.dedup();

    let mut line = format!("deploy {}", field("action"));
    if !services.is_empty() {
        line.push(' ');
        line.push_str(&services.join(","));
    }
    line.push_str(&version_change(hosts));
    let (operator, message) = who_and_why(document);
    line.push_str(&operator);
    if document.get("dry_run").and_then(Value::as_bool) == Some(true) {
        line.push_str(" (dry run)");
    }
    let plural = if hosts.len() == 1 { "host" } else { "hosts" };
    line.push_str(&format!(
        ": {} ({} {plural}, {} failed",
        field("result"),
        hosts.len(),
        count("failed")
    ));
    for (result, label) in [("rolled_back", "rolled back"), ("skipped", "skipped")] {
        let n = count(result);
        if n > 0 {
            line.push_str(&format!(", {n} {label}"));
        }
    }
    line.push_str(&format!("), run {}{message}", field("id")));
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_server::{Reply, TestServer};
    use serde_json::json;
    use std::time::Instant;

    fn document() -> Value {
        json!({
            "id": "20261126T101500Z-ab12",
            "action": "push",
            "dry_run": false,
            "result": "ok",
            "hosts": [
                {"service": "myapp", "host": "web1", "result": "ok"},
                {"service": "myapp", "host": "web2", "result": "unchanged"},
                {"service": "myapp", "host": "web3", "result": "ok"},
            ]
        })
    }

    #[tokio::test]
    async fn the_document_and_text_arrive_as_valid_json() {
        let server = TestServer::start(|_| Reply::status(200));
        let url = server.url("/hooks/T0K3N?token=SECRET");
        let text = summary_line(&document());
        send(&url, &document(), &text, Duration::from_secs(5))
            .await
            .expect("webhook delivered");
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].target, "/hooks/T0K3N?token=SECRET");
        let received: Value = serde_json::from_slice(&requests[0].body).expect("valid JSON");
        let mut expected = document();
        expected["text"] = json!(text);
        assert_eq!(received, expected);
        assert_eq!(
            received["text"],
            "deploy push myapp: ok (3 hosts, 0 failed), run 20261126T101500Z-ab12"
        );
    }

    #[tokio::test]
    async fn a_document_that_is_not_an_object_is_wrapped() {
        let server = TestServer::start(|_| Reply::status(204));
        send(
            &server.url("/h"),
            &json!([1, 2]),
            "t",
            Duration::from_secs(5),
        )
        .await
        .expect("delivered");
        let received: Value = serde_json::from_slice(&server.requests()[0].body).unwrap();
        assert_eq!(received, json!({"document": [1, 2], "text": "t"}));
    }

    #[tokio::test]
    async fn a_hanging_webhook_returns_within_the_timeout() {
        let server = TestServer::start(|_| Reply::Hang);
        let url = format!(
            "http://hook:pass@{}/hooks/TOPSECRET?token=SECRET",
            server.addr
        );
        let start = Instant::now();
        let error = send(&url, &document(), "x", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert!(
            error.contains(&format!("http://{}/…", server.addr)),
            "{error}"
        );
        for secret in ["pass", "SECRET", "hooks", "token"] {
            assert!(!error.contains(secret), "{secret} leaked: {error}");
        }
    }

    #[tokio::test]
    async fn a_failing_webhook_is_an_error_naming_the_status() {
        let server = TestServer::start(|_| Reply::status(500));
        let url = server.url("/hooks/TOPSECRET?token=SECRET");
        let error = send(&url, &document(), "x", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(error.contains("500"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
    }

    #[test]
    fn both_events_name_service_versions_operator_and_message() {
        let run = Announcement {
            id: "r9",
            action: "push",
            operator: "alice@laptop",
            message: Some("fix login\n(#12)"),
        };
        let start = start_document(&run, &["myapp".to_string()], Some("v2"), 3);
        assert_eq!(start["event"], "start");
        assert_eq!(
            start_line(&start),
            "deploy push myapp -> v2 started by alice@laptop on 3 hosts, run r9, message: fix login (#12)"
        );
        let mut result = document();
        result["hosts"][0]["from"] = json!("v1");
        result["hosts"][0]["to"] = json!("v2");
        result["hosts"][1]["from"] = json!("v2");
        result["hosts"][1]["to"] = json!("v2");
        result["hosts"][2]["to"] = json!("v2");
        let end = end_document(&run, &result);
        assert_eq!(end["event"], "end");
        assert_eq!(
            end["hosts"], result["hosts"],
            "the whole result rides along"
        );
        assert_eq!(end["message"], "fix login\n(#12)");
        assert_eq!(
            summary_line(&end),
            "deploy push myapp v1,v2,(none) -> v2 by alice@laptop: ok (3 hosts, 0 failed), run \
             20261126T101500Z-ab12, message: fix login (#12)"
        );
        let quiet = Announcement {
            message: None,
            ..run
        };
        let start = start_document(&quiet, &[], None, 1);
        assert_eq!(start["message"], Value::Null);
        assert_eq!(
            start_line(&start),
            "deploy push started by alice@laptop on 1 host, run r9"
        );
    }

    #[test]
    fn summary_lines() {
        assert_eq!(
            summary_line(&document()),
            "deploy push myapp: ok (3 hosts, 0 failed), run 20261126T101500Z-ab12"
        );
        let failed = json!({
            "id": "r2", "action": "push", "dry_run": false, "result": "rolled_back",
            "hosts": [
                {"service": "api", "host": "a", "result": "failed"},
                {"service": "web", "host": "b", "result": "rolled_back"},
                {"service": "web", "host": "c", "result": "skipped"},
            ]
        });
        assert_eq!(
            summary_line(&failed),
            "deploy push api,web: rolled_back (3 hosts, 1 failed, 1 rolled back, 1 skipped), run r2"
        );
        let dry = json!({"id": "r3", "action": "rollback", "dry_run": true, "result": "ok",
                         "hosts": [{"host": "a", "result": "planned"}]});
        assert_eq!(
            summary_line(&dry),
            "deploy rollback (dry run): ok (1 host, 0 failed), run r3"
        );
        assert_eq!(
            summary_line(&json!({})),
            "deploy ?: ? (0 hosts, 0 failed), run ?"
        );
        assert_eq!(
            summary_line(&json!("x")),
            "deploy ?: ? (0 hosts, 0 failed), run ?"
        );
        let sneaky = json!({"id": "a\nb", "action": "push", "result": "ok", "hosts": []});
        assert!(!summary_line(&sneaky).contains('\n'));
    }
}
