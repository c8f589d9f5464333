//! One module per command. Each turns a `Context` and its flags into a `RunResult`; none of
//! them prints (the reporter and `report::print_result` do) or names russh types.

pub mod check;
pub mod diff;
pub mod history;
pub mod prune;
pub mod push;
pub mod rollback;
pub mod status;
pub mod switching;
pub mod unlock;

use std::time::Instant;

use crate::app::{Context, Target};
use crate::executor::{HostError, HostRun};
use crate::plan::Lowering;
use crate::report::{Events, RunResult};

/// What a changing command ends with: its result, and whether Ctrl-C stopped it (exit 130).
pub struct Completed {
    pub result: RunResult,
    pub interrupted: bool,
}

/// Connects to one target with its service's lowering values and the host deadline.
pub async fn connect<'a>(
    context: &'a Context,
    target: Target,
    label: String,
    events: &Events,
    now: u64,
) -> Result<HostRun<'a>, HostError> {
    let service = &context.inventory.services[target.service];
    let lowering = Lowering {
        base_dir: &service.base_dir,
        run_id: &context.run_id,
        shared_paths: &service.shared_paths,
        now,
    };
    let deadline = Instant::now() + context.inventory.deploy.host_timeout;
    HostRun::connect(
        &context.connector,
        &context.endpoint(target.host),
        label,
        lowering,
        events.clone(),
        deadline,
        context.interrupted.clone(),
    )
    .await
}
