//! The operator's view: the one owner of the terminal, and of stdout's final result.
//!
//! Owns the result model (`HostResult`, `RunResult`, `Outcome`, exit codes), progress (the
//! events host workers send and the reporter task that draws them on stderr: bars, plain
//! `HOST: step` lines, or diagnostics), and every text view of a result on stdout (SPEC §5):
//! the summary table, the plan, diffs, and the `status`, `history` and `diff` views. Workers
//! never print. Every text rendering here passes host-supplied text through
//! `text::escape_for_terminal`; JSON output (the serialized `RunResult`) needs no escaping.
//!
//! One idea per file: `result` (the model), `progress` (events and reporter), `overall` (the
//! overall progress line: phases and counts), `table` (column layout), `problems` (what went
//! wrong, grouped, under the summary table), and one file per view: `summary`, `plan`,
//! `diff`, `status` (with its per-service `rollup`), `history`, `exec`. The rest of the crate names everything through the
//! re-exports below (`crate::report::X`).

mod diff;
mod exec;
mod history;
mod overall;
mod plan;
mod problems;
mod progress;
mod result;
pub mod rollup;
mod status;
mod summary;
mod table;

pub use diff::{render_diff, render_diff_view};
pub use exec::render_exec;
pub use history::render_history;
pub use overall::{Milestone, Phase};
pub use plan::render_plan;
pub use progress::{Events, ProgressMode, Reporter, show_results_on_stderr};
pub use result::{
    CheckView, Detail, Failure, HostResult, Landing, LockView, Outcome, PlannedStep, RunResult,
    StatusView, WentLive,
};
pub use status::render_status;
pub use summary::render_table;
pub use table::table as render_rows;
