//! Freeze: the persistent deploy freeze of a service on a host (`deploy lock --message`), the
//! programs that set and lift it, the check the lock script makes (`FREEZE_CHECK`), and the
//! freeze line they all read (`Freeze`).
//!
//! A freeze is the file `<base_dir>/.deploy/freeze` holding one line `OPERATOR SINCE MESSAGE`
//! (operator a safe word, since unix seconds, the message with control characters replaced by
//! spaces and bounded). It is written to a temporary name and renamed, so a reader sees a whole
//! line or none. Unlike the run lock it has no holder process: it stays until `deploy unlock`
//! lifts it. Push, rollback and prune refuse a frozen host: the lock script checks for the file
//! after taking the run lock (so a freeze set while a run waits is seen) and, if present, lets
//! the lock go and answers `FROZEN <line>` with exit status 3.

use super::layout::{self, within_state};
use super::script::{Script, quote, script};

/// First word of the lock script's answer on a frozen host.
pub const FROZEN: &str = "FROZEN";
/// How long a freeze message may be (longer ones are cut in the middle).
pub const FREEZE_MESSAGE_LIMIT: usize = 1024;

/// A freeze as read from a host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Freeze {
    pub operator: String,
    /// Unix seconds; `None` when the line does not say.
    #[serde(skip)]
    pub since: Option<u64>,
    /// RFC 3339 form of `since` ("unknown" when the line does not say).
    #[serde(rename = "since")]
    pub since_text: String,
    pub message: String,
}

impl Freeze {
    /// Parses a freeze line (untrusted: any text reads as something, missing fields "unknown").
    pub fn parse(line: &str) -> Freeze {
        let mut fields = line.splitn(3, ' ');
        let operator = fields
            .next()
            .filter(|field| !field.is_empty())
            .unwrap_or("unknown")
            .to_string();
        let since = fields.next().and_then(|field| field.parse::<u64>().ok());
        let message = fields.next().unwrap_or("").to_string();
        Freeze {
            operator,
            since,
            since_text: since
                .and_then(crate::text::rfc3339_of_unix)
                .unwrap_or_else(|| "unknown".to_string()),
            message: crate::text::shorten(&message, FREEZE_MESSAGE_LIMIT),
        }
    }

    /// "frozen by alice@laptop since 2026-11-30T18:00:00Z: incident 123"
    pub fn describe(&self) -> String {
        format!(
            "frozen by {} since {}: {}",
            self.operator, self.since_text, self.message
        )
    }
}

/// The freeze line for `operator` at `now` with `message` (control characters become spaces).
pub fn freeze_line(operator: &str, now: u64, message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = crate::text::shorten(clean.trim(), FREEZE_MESSAGE_LIMIT);
    let operator: String = operator.chars().filter(|c| !c.is_whitespace()).collect();
    format!("{operator} {now} {clean}")
}

/// Sets (or replaces) the freeze; prints `WAS <old line>` when it replaced one.
pub fn freeze_script(base_dir: &str, line: &str) -> String {
    script!(
        "set -u\nb={base}\n\
         mkdir -p -- \"$b\"/{state} || exit 1\n\
         cd -- \"$b\" || exit 1\n\
         if [ -f {freeze} ]; then old=; IFS= read -r old < {freeze} || true; printf 'WAS %s\\n' \"$old\"; fi\n\
         printf '%s\\n' {line} > {freeze}.tmp.$$ && mv -f -- {freeze}.tmp.$$ {freeze} || {{ rm -f -- {freeze}.tmp.$$; echo \"cannot write $b/{freeze}\" >&2; exit 1; }}\n",
        base = quote(base_dir),
        state = layout::STATE,
        freeze = layout::FREEZE,
        line = quote(line),
    )
    .into_string()
}

/// Lifts the freeze; prints `WAS <line>` when there was one, nothing otherwise.
pub fn thaw_script(base_dir: &str) -> String {
    script!(
        "set -u\nb={base}\n\
         cd -- \"$b\" 2>/dev/null || exit 0\n\
         [ -f {freeze} ] || exit 0\n\
         old=; IFS= read -r old < {freeze} || true\n\
         rm -f -- {freeze} || exit 1\n\
         printf 'WAS %s\\n' \"$old\"\n",
        base = quote(base_dir),
        freeze = layout::FREEZE,
    )
    .into_string()
}

/// What the freeze and thaw programs printed: the freeze that was there before, if any.
pub fn parse_previous(stdout: &str) -> Result<Option<Freeze>, String> {
    let mut previous = None;
    for (index, line) in stdout.lines().enumerate() {
        match line.strip_prefix("WAS ") {
            Some(rest) => previous = Some(Freeze::parse(rest)),
            None => {
                return Err(format!(
                    "unexpected host output on line {} : {line:?}",
                    index + 1
                ));
            }
        }
    }
    Ok(previous)
}

/// The lock script's check, run inside `.deploy/` once the lock is taken: a frozen service
/// lets the lock go at once and answers `FROZEN <line>` (exit 3).
pub fn freeze_check() -> Script {
    script!(
        "if [ -f {freeze} ]; then\n\
         \x20 frozen=; IFS= read -r frozen < {freeze} || true\n\
         \x20 rm -rf {lock}\n\
         \x20 printf '{frozen_word} %s\\n' \"$frozen\"\n\
         \x20 exit 3\n\
         fi\n",
        freeze = within_state(layout::FREEZE),
        lock = within_state(layout::LOCK),
        frozen_word = FROZEN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_lines_round_trip_and_stay_one_line() {
        let line = freeze_line("alice@laptop", 0, "incident 123\nrm -rf /\x1b[31m");
        assert!(!line.contains('\n'));
        let freeze = Freeze::parse(&line);
        assert_eq!(freeze.operator, "alice@laptop");
        assert_eq!(freeze.since, Some(0));
        assert_eq!(freeze.message, "incident 123 rm -rf / [31m");
        assert_eq!(
            freeze.describe(),
            "frozen by alice@laptop since 1970-01-01T00:00:00Z: incident 123 rm -rf / [31m"
        );
        assert_eq!(Freeze::parse("").operator, "unknown");
        assert_eq!(Freeze::parse("x y").since_text, "unknown");
    }

    #[test]
    fn freezing_and_thawing_on_a_directory() {
        let directory = tempfile::tempdir().expect("tempdir");
        let run = |script: String| {
            let stdout = crate::remote::local_shell::stdout_of(directory.path(), &script);
            String::from_utf8_lossy(&stdout).into_owned()
        };
        let first = freeze_line("alice@laptop", 5, "it's an incident");
        assert_eq!(parse_previous(&run(freeze_script("app", &first))), Ok(None));
        let second = freeze_line("bob@desk", 6, "still");
        let replaced = parse_previous(&run(freeze_script("app", &second))).expect("parses");
        assert_eq!(
            replaced.map(|freeze| freeze.message),
            Some("it's an incident".to_string())
        );
        let lifted = parse_previous(&run(thaw_script("app"))).expect("parses");
        assert_eq!(
            lifted.map(|freeze| freeze.operator),
            Some("bob@desk".to_string())
        );
        assert_eq!(parse_previous(&run(thaw_script("app"))), Ok(None));
        assert!(parse_previous("garbage").is_err());
    }
}
