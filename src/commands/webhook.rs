//! The webhook events of a changing run (`[notify].webhook`; SPEC §2): `started` when the run
//! has passed its local checks and is about to work on hosts, `ended` with its result. Both
//! are best effort: a failing or slow webhook is logged (its URL redacted) and never changes
//! the run. The start event is sent in the background so a slow webhook never delays the run;
//! the end event waits for it, so the two always arrive in order.

use crate::app::Context;
use crate::notify::{self, Announcement};
use crate::report::RunResult;

/// The webhook's time limit (`DEPLOY_HTTP_TIMEOUT` overrides it).
fn timeout() -> std::time::Duration {
    crate::http::configured_timeout(std::time::Duration::from_secs(10))
}

fn announcement<'a>(context: &'a Context, action: &'a str) -> Announcement<'a> {
    Announcement {
        id: &context.run_id,
        action,
        operator: &context.operator,
        message: context.message.as_deref(),
    }
}

/// Sends the start event of `action` on `services` (`to`: the version it ships or names) for
/// `hosts` (service, host) pairs, in the background.
pub fn started(
    context: &Context,
    action: &str,
    services: &[usize],
    to: Option<&str>,
    hosts: usize,
) {
    let Some(settings) = &context.inventory.notify else {
        return;
    };
    let names: Vec<String> = services
        .iter()
        .map(|&service| context.inventory.services[service].name.clone())
        .collect();
    let document = notify::start_document(&announcement(context, action), &names, to, hosts);
    let text = notify::start_line(&document);
    let webhook = settings.webhook.clone();
    let task = tokio::spawn(async move {
        if let Err(error) = notify::send(&webhook, &document, &text, timeout()).await {
            tracing::warn!("{error}");
        }
    });
    if let Ok(mut start) = context.webhook_start.lock() {
        *start = Some(task);
    }
}

/// Sends the end event: the whole result, with operator and message (after the start event).
pub async fn ended(context: &Context, result: &RunResult) {
    let Some(settings) = &context.inventory.notify else {
        return;
    };
    let start = context
        .webhook_start
        .lock()
        .ok()
        .and_then(|mut start| start.take());
    if let Some(start) = start {
        let _ = start.await;
    }
    let document = match serde_json::to_value(result) {
        Ok(document) => document,
        Err(error) => {
            tracing::warn!("webhook: cannot serialize the result: {error}");
            return;
        }
    };
    let document = notify::end_document(&announcement(context, &result.action), &document);
    let text = notify::summary_line(&document);
    if let Err(error) = notify::send(&settings.webhook, &document, &text, timeout()).await {
        tracing::warn!("{error}");
    }
}
