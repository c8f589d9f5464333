//! Shell functions about processes, shared by every script that looks at them (state, lock,
//! unlock, stopping steps): telling a process apart from a later one that reuses its PID, and
//! stopping the process groups of the steps a run left running.

use super::layout;
use super::script::{Script, script};

/// Shell functions shared by the scripts that look at processes (facts, lock, unlock, stop):
/// `group_of PID` prints a process's process group; `state_of PID` its state (`Z`: a zombie,
/// gone but not yet reaped); `group_alive` (with `$group` set) succeeds while any process of
/// that group still runs (zombies do not count); `start_of PID` prints a process's start time (clock ticks since boot, `/proc/PID/stat`
/// field 22); `holder_alive LINE` succeeds when a lock holder line's process still runs: PID
/// above 1, present, and (when the line records them) the same boot id and start time, so a
/// PID reused by another process after a crash or reboot never counts as the holder.
pub const PROCESS_FUNCTIONS: &str = r#"group_of() { s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -f; set -- $s; set +f; printf '%s\n' "${3-}"; }
state_of() { s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -f; set -- $s; set +f; printf '%s\n' "${1-}"; }
group_alive() (
  for stat in /proc/[0-9]*/stat; do
    IFS= read -r line < "$stat" 2>/dev/null || continue
    line=${line##*) }
    set -f; set -- $line; set +f
    [ "${3-}" = "$group" ] && [ "${1-}" != Z ] && exit 0
  done
  exit 1
)
start_of() { s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -f; set -- $s; set +f; printf '%s\n' "${20-}"; }
holder_alive() (
  set -f; set -- $1
  case ${1-} in ''|*[!0-9]*) exit 1;; esac
  [ "$1" -gt 1 ] && [ -d "/proc/$1" ] || exit 1
  [ "$(state_of "$1")" != Z ] || exit 1
  if [ -n "${5-}" ]; then [ "$5" = "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" ] || exit 1; fi
  if [ -n "${6-}" ]; then [ "$6" = "$(start_of "$1")" ] || exit 1; fi
  exit 0
)
"#;

/// `stop_steps DIR FENCE`: first writes FENCE (so a step numbered at or below it that registers
/// after this look exits at once: see `steps::register_step`), then stops every step registered
/// in DIR (TERM to its process group, KILL after 5 s) and waits up to 10 s for the groups to be
/// gone (zombies waiting for their parent to reap them count as gone). A record whose leader
/// is not the process that wrote it (another start time: the PID was reused) is dropped, never
/// signalled.
pub(super) fn stop_steps_function() -> Script {
    script!(
        r#"stop_steps() {{
  printf '%s\n' "$2" > "$1/{fence}" 2>/dev/null
  for f in "$1"/{step}*; do
    [ -f "$f" ] || continue
    IFS=' ' read -r group start < "$f" || group=
    case $group in ''|*[!0-9]*) rm -f -- "$f"; continue;; esac
    if [ "$group" -gt 1 ] && [ "$(start_of "$group")" = "$start" ]; then kill -TERM -"$group" 2>/dev/null; else rm -f -- "$f"; fi
  done
  tries=0
  while :; do
    left=
    for f in "$1"/{step}*; do
      [ -f "$f" ] || continue
      IFS=' ' read -r group start < "$f" || group=
      if [ -n "$group" ] && group_alive; then
        left=yes
        [ "$tries" -lt 25 ] || kill -KILL -"$group" 2>/dev/null
      else
        rm -f -- "$f"
      fi
    done
    [ -n "$left" ] || return 0
    tries=$((tries + 1))
    [ "$tries" -le 50 ] || {{ echo "steps of this run still running on the host after 10 s" >&2; return 1; }}
    sleep 0.2 2>/dev/null || sleep 1
  done
}}
"#,
        step = layout::STEP_RECORD,
        fence = layout::STEP_FENCE,
    )
}
