//! `deploy`: ship release tarballs to a fleet of Linux hosts over SSH and switch them
//! atomically. This file only parses the command line, sets up logging and the runtime, and
//! maps outcomes to exit codes (SPEC §6); the work lives in `commands`.

mod allocator;
mod app;
mod artifact;
mod cli;
mod commands;
mod executor;
mod fetch;
mod guard;
mod http;
mod inventory;
mod limits;
mod logging;
mod manifest;
mod notify;
#[cfg(test)]
mod parser_properties;
mod plan;
mod remote;
mod report;
mod ssh;
mod static_build;
mod suggest;
mod text;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracing::Instrument;

use crate::app::{Context, InputError};
use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "deploy",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    // Before any thread starts: freed per-host memory goes back to the system.
    allocator::compact();
    logging::init(&cli.global);
    // Every connection is a file descriptor: use all the process may have.
    let open_files = limits::raise_open_files();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let json_logs = logging::json(&cli.global);
    let code = runtime.block_on(run(cli, json_logs, open_files));
    // Every session was closed and every lock released inside `run`; russh tasks still winding
    // down in the background must not delay the exit.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Runs the command; a fatal error is reported once: as a JSON line with `--log-format json`,
/// as `error: ...` otherwise.
async fn run(cli: Cli, json_logs: bool, open_files: Option<u64>) -> u8 {
    match dispatch(cli, open_files).await {
        Ok(code) => code,
        Err(error) => {
            let code = if error.downcast_ref::<InputError>().is_some() {
                2
            } else {
                1
            };
            if json_logs {
                tracing::error!("{error:#}");
            } else {
                eprintln!("error: {error:#}");
            }
            code
        }
    }
}

/// Text result of a changing command: the plan for a dry run, the summary table otherwise.
fn changes_text(result: &report::RunResult) -> String {
    if result.dry_run {
        report::render_plan(result)
    } else {
        report::render_table(result)
    }
}

async fn dispatch(cli: Cli, open_files: Option<u64>) -> anyhow::Result<u8> {
    // `init` writes the inventory that every other command reads.
    if let Command::Init(arguments) = &cli.command {
        print!("{}", commands::init::run(&cli.global, arguments)?);
        return Ok(0);
    }
    static_build::check_random_source()?;
    let interrupted = app::watch_interrupts();
    let mut context = Context::new(&cli.global, interrupted)?;
    context.message = cli.command.message();
    if let Some(limit) = open_files {
        context.check_open_files(limit, cli.command.holds_every_host())?;
    }
    context.unlock_identities().await;
    // An `error` span: enabled at every verbosity, so `-q`'s warnings still carry `run_id`.
    let span = tracing::error_span!("run", run_id = %context.run_id);
    dispatch_in(cli, context).instrument(span).await
}

async fn dispatch_in(cli: Cli, context: Context) -> anyhow::Result<u8> {
    // Each command's result, and how its text view is drawn.
    let (mut result, render): (report::RunResult, fn(&report::RunResult) -> String) =
        match &cli.command {
            Command::Check => (commands::check::run(&context).await?, report::render_table),
            Command::Status(arguments) => (
                commands::status::run(&context, arguments).await?,
                report::render_status,
            ),
            Command::Push(arguments) => (
                commands::push::run(&context, arguments).await?,
                changes_text,
            ),
            Command::Rollback(arguments) => (
                commands::rollback::run(&context, arguments).await?,
                changes_text,
            ),
            Command::History(arguments) => (
                commands::history::run(&context, arguments).await?,
                report::render_history,
            ),
            Command::Prune(arguments) => (
                commands::prune::run(&context, arguments).await?,
                report::render_plan,
            ),
            Command::Unlock(arguments) => {
                if cli.global.hosts.is_none() {
                    return Err(InputError(
                        "unlock needs --hosts: name the hosts whose lock to remove".to_string(),
                    )
                    .into());
                }
                (
                    commands::unlock::run(&context, arguments).await?,
                    report::render_plan,
                )
            }
            Command::Diff(arguments) => (
                commands::diff::run(&context, arguments).await?,
                report::render_diff_view,
            ),
            Command::Exec(arguments) => (
                commands::exec::run(&context, arguments).await?,
                report::render_exec,
            ),
            Command::Run(arguments) => {
                if arguments.task.is_none() {
                    let listing = commands::run::list(&context, arguments)?;
                    print!("{listing}");
                    return Ok(0);
                }
                (
                    commands::run::run(&context, arguments).await?,
                    report::render_exec,
                )
            }
            Command::Lock(arguments) => (
                commands::lock::run(&context, arguments).await?,
                report::render_plan,
            ),
            Command::Completions { .. } | Command::Init(_) => return Ok(0),
        };
    if context.is_interrupted() {
        result.interrupted();
    }
    let changing = matches!(
        cli.command,
        Command::Push(_)
            | Command::Rollback(_)
            | Command::Prune(_)
            | Command::Unlock(_)
            | Command::Lock(_)
    );
    if changing && !result.dry_run {
        commands::webhook::ended(&context, &result).await;
    }
    {
        use std::io::Write;
        let text = if context.json {
            serde_json::to_string_pretty(&result)? + "\n"
        } else {
            render(&result)
        };
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
    }
    // Any command stopped by Ctrl-C / SIGTERM exits 130 (changing commands have already
    // switched back what they switched).
    if context.is_interrupted() {
        return Ok(130);
    }
    Ok(result.exit_code())
}
