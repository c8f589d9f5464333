//! Shell functions about processes, shared by every script that looks at them (state, lock,
//! unlock, stopping steps): telling a process apart from a later one that reuses its PID, and
//! stopping the process groups of the steps a run left running.

use super::layout;
use super::script::{Script, script};

/// Shell functions shared by the scripts that look at processes (facts, lock, unlock, stop),
/// written without a command substitution or an external program (each would cost the host a
/// fork, and `cat` an exec, for every call: a push calls them a dozen times per host):
/// `proc_stat PID` reads `/proc/PID/stat` into `proc_state` (`Z`: a zombie, gone but not yet
/// reaped), `proc_group` (its process group) and `proc_start` (start time, clock ticks since
/// boot, field 22), and fails when the process is gone; `group_alive` (with `$group` set)
/// succeeds while any process of that group still runs (zombies do not count); `holder_alive
/// LINE` succeeds when a lock holder line's process still runs: PID above 1, present, and (when
/// the line records them) the same boot id and start time, so a PID reused by another process
/// after a crash or reboot never counts as the holder.
pub const PROCESS_FUNCTIONS: &str = r#"proc_stat() {
  proc_line= proc_state= proc_group= proc_start=
  IFS= read -r proc_line 2>/dev/null < "/proc/$1/stat" || [ -n "$proc_line" ] || return 1
  proc_line=${proc_line##*) }
  set -f; set -- $proc_line; set +f
  proc_state=${1-}; proc_group=${3-}; proc_start=${20-}
}
group_alive() (
  for stat in /proc/[0-9]*/stat; do
    IFS= read -r line < "$stat" 2>/dev/null || continue
    line=${line##*) }
    set -f; set -- $line; set +f
    [ "${3-}" = "$group" ] && [ "${1-}" != Z ] && exit 0
  done
  exit 1
)
holder_alive() {
  set -f; set -- $1; set +f
  case ${1-} in ''|*[!0-9]*) return 1;; esac
  [ "$1" -gt 1 ] && proc_stat "$1" && [ "$proc_state" != Z ] || return 1
  if [ -n "${5-}" ]; then
    holder_boot=; IFS= read -r holder_boot 2>/dev/null < /proc/sys/kernel/random/boot_id
    [ "$5" = "$holder_boot" ] || return 1
  fi
  [ -z "${6-}" ] || [ "$6" = "$proc_start" ]
}
"#;

/// Shell functions about a service's lock, shared by the lock script (which never breaks a
/// live lock) and the facts script (`status`, and `unlock`, which leaves a live one alone);
/// they need [`PROCESS_FUNCTIONS`]. `older_than_a_minute PATH` succeeds when PATH was last
/// changed over a minute ago (`find`: the one external program here, started only for a lock
/// without its holder line or a leftover `lock.break`). `lock_alive DIR LINE` succeeds when the
/// lock directory DIR, whose holder line is LINE, is held: by a live holder (`holder_alive`),
/// or, without a holder line, by a run between its `mkdir` and its write of the line
/// (microseconds) or one letting go, unless DIR is older than a minute (its taker died in
/// between). Breaking such a lock sooner would remove a lock another run is taking.
pub const LOCK_FUNCTIONS: &str = r#"older_than_a_minute() { [ -n "$(find "$1" -maxdepth 0 -mmin +1 2>/dev/null)" ]; }
lock_alive() {
  if [ -n "$2" ]; then holder_alive "$2"; else ! older_than_a_minute "$1"; fi
}
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
    if [ "$group" -gt 1 ] && proc_stat "$group" && [ "$proc_start" = "$start" ]; then kill -TERM -"$group" 2>/dev/null; else rm -f -- "$f"; fi
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
