//! The downgrade check of a push (SPEC §4 step 1), decided for every selected host before any
//! of them is locked or sent anything: each host's state is read with the read-only facts
//! script (as a dry run does), and a push that would be a downgrade anywhere (`guard`) is
//! refused as a whole, exit 2, naming host, version and when it went live. Nothing is changed
//! on any host: no lock, no directory, no history record.
//!
//! The connections stay open for the push that follows (its `lock_all` shares them): the
//! check costs one read-only command per host, not a second handshake. A host that cannot be
//! reached here is left to the push, which reports it as it always does.

use crate::app::{Context, InputError, Target, for_each, unix_now};
use crate::commands::shipment::Shipment;
use crate::executor::HostRun;
use crate::report::{ProgressMode, Reporter};

/// Connections opened by the check, kept until the push has its own.
pub struct Opened<'a>(Vec<HostRun<'a>>);

impl Opened<'_> {
    /// Lets go of the check's share of each connection.
    pub async fn close(self) {
        for run in self.0 {
            run.close().await;
        }
    }
}

/// Reads every target's state and refuses the push if it is a downgrade on any of them.
pub async fn check<'a>(
    context: &'a Context,
    shipments: &[Shipment],
) -> Result<Opened<'a>, InputError> {
    let services: Vec<usize> = shipments.iter().map(|shipment| shipment.service).collect();
    let targets = context.targets(&services)?;
    let with_service = services.len() > 1;
    // Silent: the push's own progress starts with its connect lines. The runs kept open hold
    // clones of `events`, so the silent reporter is not waited for: it ends with the last one.
    let (events, _reporter) = Reporter::start(ProgressMode::Silent, targets.len());
    let now = unix_now();
    let checked = for_each(targets, context.concurrency, |target: Target| {
        let events = events.clone();
        let label = context.label(target, with_service);
        let version = shipments
            .iter()
            .find(|shipment| shipment.service == target.service)
            .map(|shipment| shipment.version.clone());
        async move {
            let run = super::connect(context, target, label, &events, now)
                .await
                .ok()?;
            let found = match (run.facts().await, version) {
                (Ok(facts), Some(version)) => crate::guard::downgrade(&facts, &version),
                _ => None,
            };
            let refusal = found.map(|downgrade| {
                format!(
                    "{} ({}): {}",
                    context.inventory.hosts[target.host].name,
                    context.inventory.services[target.service].name,
                    downgrade.describe()
                )
            });
            Some((run, refusal))
        }
    })
    .await;
    drop(events);
    let mut opened = Vec::new();
    let mut refusals = Vec::new();
    for (run, refusal) in checked.into_iter().flatten() {
        opened.push(run);
        refusals.extend(refusal);
    }
    let opened = Opened(opened);
    if refusals.is_empty() {
        return Ok(opened);
    }
    opened.close().await;
    let plural = if refusals.len() == 1 { "host" } else { "hosts" };
    Err(InputError(format!(
        "push refused: a downgrade on {} {plural} (by each host's own release log); nothing was changed. \
         `deploy rollback` (or `--to V`) is the way back; pass --allow-downgrade to push it anyway:\n  {}",
        refusals.len(),
        refusals.join("\n  ")
    )))
}
