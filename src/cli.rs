//! The command line (SPEC §1): flags, subcommands and their help texts. Parsing only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  deploy check -i prod.toml                  verify connectivity and remote prerequisites
  deploy push -i prod.toml --dry-run         show what a push would do on every host
  deploy push -i prod.toml                   push the version and artifact the inventory names
  deploy push --service api --version v2 --artifact dist/api-v2.tar.gz
  deploy rollback -i prod.toml --hosts web3  roll one host back
  deploy status -i prod.toml --output json   machine-readable fleet state";

#[derive(Debug, Parser)]
#[command(
    name = "deploy",
    version,
    about = "Ship release tarballs to a fleet of Linux hosts over SSH and switch them atomically",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Inventory file (TOML, SPEC §2)
    #[arg(short = 'i', long, global = true, default_value = "deploy.toml")]
    pub inventory: PathBuf,
    /// Only these hosts: names, tags and globs (`web*`), comma-separated; `!x` removes x, `a:&b` keeps what is in both
    #[arg(long, global = true, value_name = "SEL")]
    pub hosts: Option<String>,
    /// Hosts worked on at once (overrides [deploy].concurrency)
    #[arg(short = 'j', long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Final result on stdout as text or one JSON document
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Diagnostics on stderr as text or JSON lines
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub log_format: Format,
    /// No progress bars, even on a terminal
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// More diagnostics (repeat for more)
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only warnings and errors on stderr: no progress, no info lines (failures, switch-backs and
    /// lost history records still show)
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stage, verify and atomically switch a release on every selected host
    #[command(
        after_help = "Examples:\n  deploy push -i prod.toml --dry-run --diff\n  deploy push --service api --version v2 --artifact dist/api-v2.tar.gz\n  deploy push --message \"fix login (#123)\"\n  deploy push --service api --version v1 --allow-downgrade   (rollback is the usual way back)"
    )]
    Push(PushArgs),
    /// Switch hosts back to the release that was live before
    #[command(
        after_help = "Examples:\n  deploy rollback -i prod.toml --dry-run\n  deploy rollback --hosts web3 --to v1.2.2 --message \"5xx after v1.2.3\""
    )]
    Rollback(RollbackArgs),
    /// Live release, previous release, releases kept and lock holder per host
    #[command(
        after_help = "Examples:\n  deploy status -i prod.toml\n  deploy status --verify --output json"
    )]
    Status(StatusArgs),
    /// Audit log of each selected host, newest first
    #[command(
        after_help = "Examples:\n  deploy history --hosts web1 --limit 5\n  deploy history --service api --output json"
    )]
    History(HistoryArgs),
    /// File-level difference between two releases (default: live release vs the artifact)
    #[command(
        after_help = "FROM and TO are versions (releases kept on each host); FROM defaults to the live release, TO to the\nartifact the inventory names for the service (checked locally first, like a push).\n\nExamples:\n  deploy diff                 live release vs the artifact, on every selected host\n  deploy diff v1              v1 vs the artifact\n  deploy diff v1 v2 --hosts web1"
    )]
    Diff(DiffArgs),
    /// Remove old releases, keeping the live and previous ones
    #[command(
        after_help = "Examples:\n  deploy prune --keep 3 --dry-run\n  deploy prune --service api"
    )]
    Prune(PruneArgs),
    /// Lift a deploy freeze, or remove a lock left by a run that is gone
    #[command(
        after_help = "Examples:\n  deploy unlock --hosts web3\n  deploy unlock --hosts web3 --service api --force"
    )]
    Unlock(UnlockArgs),
    /// Run an ad-hoc command on every selected host (grouped output)
    #[command(
        after_help = "Examples:\n  deploy exec -- uptime\n  deploy exec --service api --hosts 'web*' -- ls -l\n  deploy exec --sudo -- systemctl status myapp"
    )]
    Exec(ExecArgs),
    /// Run a named task of a service ([services.NAME.tasks]); without a name, list them
    #[command(after_help = "Examples:\n  deploy run\n  deploy run restart --service api")]
    Run(RunArgs),
    /// Freeze deploys: push, rollback and prune refuse these hosts until `deploy unlock`
    #[command(
        after_help = "Examples:\n  deploy lock --message \"incident 123\" --hosts web3\n  deploy lock --message \"release freeze\" --service api"
    )]
    Lock(LockArgs),
    /// Write a commented deploy.toml, a sample systemd unit and health check (never overwrites)
    #[command(
        after_help = "With init, --hosts names the hosts to write: NAME or NAME=ADDRESS, comma-separated (default: one placeholder).\nThe files go beside the inventory (-i, default ./deploy.toml): deploy/systemd/SERVICE.service, deploy/health-check.sh.\n\nExample:\n  deploy init --service myapp --hosts web1,web2"
    )]
    Init(InitArgs),
    /// Check the inventory, connectivity and remote prerequisites
    #[command(
        after_help = "Examples:\n  deploy check -i prod.toml\n  deploy -v check --hosts web1   (where each SSH setting came from)"
    )]
    Check,
    /// Print shell completions
    #[command(after_help = "Example:\n  deploy completions bash > /etc/bash_completion.d/deploy")]
    Completions {
        /// The shell to print completions for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Why this run happens (`--message`, or `DEPLOY_MESSAGE`), for push and rollback (and a
    /// freeze's message for lock); blank text counts as none.
    pub fn message(&self) -> Option<String> {
        let message = match self {
            Command::Push(arguments) => arguments.message.as_deref(),
            Command::Rollback(arguments) => arguments.message.as_deref(),
            Command::Lock(arguments) => Some(arguments.message.as_str()),
            _ => None,
        }?;
        (!message.trim().is_empty()).then(|| message.to_string())
    }

    /// Whether the command holds every selected host's connection (and lock) at once: a real
    /// push or rollback, from the preflight to the end.
    pub fn holds_every_host(&self) -> bool {
        match self {
            Command::Push(arguments) => !arguments.dry_run,
            Command::Rollback(arguments) => !arguments.dry_run,
            _ => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Services to push (repeat or comma-separate; default: every service with a version and artifact)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Version to push (only with a single service)
    #[arg(long)]
    pub version: Option<String>,
    /// Artifact to push: local .tar.gz path or http(s) URL (only with a single service)
    #[arg(long)]
    pub artifact: Option<String>,
    /// Read each host's state and print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: file-level difference between the live release and the artifact
    #[arg(long, requires = "dry_run")]
    pub diff: bool,
    /// Replace a version already on a host with different content
    #[arg(long)]
    pub force: bool,
    /// Send the whole artifact, even where a delta from the live release would do
    #[arg(long)]
    pub full: bool,
    /// Push even to hosts where this release went live before (a downgrade by the host's own
    /// record); `deploy rollback` is the usual way back
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Why this run happens: recorded in each host's history and sent in the webhook
    #[arg(long, value_name = "TEXT", env = "DEPLOY_MESSAGE")]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Services to roll back (repeat or comma-separate; default: every service)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Release to switch to (must be complete on every selected host; default: the release
    /// that went live before the live one)
    #[arg(long, value_name = "V")]
    pub to: Option<String>,
    /// Read each host's state and print what would switch; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Why this run happens: recorded in each host's history and sent in the webhook
    #[arg(long, value_name = "TEXT", env = "DEPLOY_MESSAGE")]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Services to show (repeat or comma-separate; default: every service)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Re-hash the live release and report drift from its manifest
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Services whose history to show (repeat or comma-separate; default: every service)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// At most this many records per host
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Services to compare (repeat or comma-separate; default: every service with an artifact)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Version to compare from (default: the live release on each host)
    #[arg(value_name = "FROM")]
    pub from: Option<String>,
    /// Version to compare to, a release kept on the host (default: the service's artifact)
    #[arg(value_name = "TO")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Services to prune (repeat or comma-separate; default: every service)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Releases to keep (default: the service's keep_releases)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// Read each host's state and print what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run in this service's live release directory, with its DEPLOY_* variables
    #[arg(long)]
    pub service: Option<String>,
    /// Run the command through `sudo -n` (never prompts)
    #[arg(long)]
    pub sudo: bool,
    /// The command (after `--`), run by `sh -c` on each host
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task to run (none: list the tasks)
    pub task: Option<String>,
    /// The service whose task to run (default: every selected service that defines it)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Run the task through `sudo -n` (never prompts)
    #[arg(long)]
    pub sudo: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Services to freeze (repeat or comma-separate; default: every service)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Why deploys are frozen (shown to whoever is refused)
    #[arg(long, required = true)]
    pub message: String,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Services whose lock or freeze to lift (repeat or comma-separate; default: every service)
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Break the lock even if its holder still runs
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The service to write (also names its systemd unit)
    #[arg(long, default_value = "app", value_name = "NAME")]
    pub service: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every subcommand says what it is for, and every subcommand has
    /// examples (SPEC §1; issue 15: no empty help for `--service`/`--dry-run`).
    #[test]
    fn every_argument_and_subcommand_has_help_and_examples() {
        let command = Cli::command();
        let mut missing = Vec::new();
        for argument in command.get_arguments() {
            if argument
                .get_help()
                .is_none_or(|help| help.to_string().trim().is_empty())
            {
                missing.push(format!("deploy --{}", argument.get_id()));
            }
        }
        for subcommand in command.get_subcommands() {
            let name = subcommand.get_name();
            if name == "help" {
                continue;
            }
            if subcommand.get_about().is_none() {
                missing.push(format!("deploy {name}: about"));
            }
            let examples = subcommand
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            if !examples.contains("Example") || !examples.contains("deploy ") {
                missing.push(format!("deploy {name}: examples"));
            }
            for argument in subcommand.get_arguments() {
                let id = argument.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if argument
                    .get_help()
                    .is_none_or(|help| help.to_string().trim().is_empty())
                {
                    missing.push(format!("deploy {name} {id}"));
                }
            }
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn message_comes_from_the_flag_and_blank_is_none() {
        let parse = |arguments: &[&str]| Cli::try_parse_from(arguments).expect("parses");
        let push = parse(&["deploy", "push", "--message", "fix #1"]);
        assert_eq!(push.command.message().as_deref(), Some("fix #1"));
        let blank = parse(&["deploy", "rollback", "--message", "  "]);
        assert_eq!(blank.command.message(), None);
        let status = parse(&["deploy", "status"]);
        assert_eq!(status.command.message(), None);
    }
}
