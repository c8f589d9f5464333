//! Remote: every program sent to a host, each next to the parser of its output.
//!
//! A host is only ever reached through POSIX `sh` scripts built here, from fixed text, quoted
//! values and values that are shell words by construction (`script`), with the paths of what a
//! host holds written once (`layout`). Remote output is untrusted: every parser here is strict
//! and names the line it could not read.
//!
//! | module | program | its output |
//! |---|---|---|
//! | `step`, `steps` | the `Step` model of every remote change (chosen by `plan`), and its lowering: prepare, upload, fetch, finalize, switch, retract, prune, unlock, hooks, health; stopping abandoned steps, discarding staging, appending history | exit status and the lost-record markers |
//! | `lock` | taking and holding the service lock | `LOCKED` + facts, `HELD <holder>`, `ERROR <why>` |
//! | `state` | the read-only facts script | `Facts` and what follows from them (live, previous, go-live order); the release log; the lock holder line (`LockHolder`) |
//! | `process` | shell functions about processes (shared) | — |
//! | `delta` | a delta push on the host: receiving the members sent into staging and linking (or copying) the rest from the base release; scanning the staged tree; sending members again | exit status; the staged tree's listing and digests (parsed by `scan`) |
//! | `scan` | a recorded manifest; the listing and digests of a release | the manifest of what is on the host |
//! | `history` | reading `.deploy/history.jsonl` | `HistoryRecord`s |
//! | `exec` | an ad-hoc command or named task (`exec`, `run`) with the inventory's variables | `ExecOutput` (streams, exit code), grouped by identical output |
//! | `files` | the sha256 of each `[services.NAME.files]` file in `shared/`; receiving one on stdin | `FILE <index> <sha256>` |
//! | `freeze` | the deploy freeze (`lock`, `unlock`, and its check inside the lock script) | `FREEZE <holder line>` |
//! | `probe` | `deploy check`'s prerequisites | one `Check` per item |
//!
//! Nothing here talks to a host (`executor` does) or decides what to do (`plan` does).

pub mod delta;
pub mod exec;
pub mod files;
pub mod freeze;
pub mod history;
pub mod layout;
pub mod lock;
pub mod probe;
pub mod process;
pub mod scan;
pub mod script;
pub mod state;
pub mod step;
pub mod steps;

#[cfg(test)]
pub mod local_shell;
#[cfg(test)]
mod script_snapshots;
