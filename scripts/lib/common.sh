# shellcheck shell=bash
# Shared by scripts/demo.sh and scripts/bench.sh: the tools they need, the build, and a local fleet
# of real OpenSSH sshd "hosts" on 127.0.0.1. The fleet is the integration tests' own
# (tests/it/support/mod.rs), run by the example binary examples/testfleet.rs: one sshd per host
# web1..webN, its own ed25519 host key, free port and login directory, strict known_hosts;
# nothing talks to anything but 127.0.0.1.
#
# Sourced, not run. Usage:
#   . scripts/lib/common.sh
#   require_openssh                  # installs openssh-server on Debian when root, else fails
#   build_deploy release             # sets DEPLOY_PATH and TESTFLEET_PATH
#   trap 'fleet_down' EXIT
#   fleet_up 3                       # sets FLEET_DIR FLEET_INVENTORY FLEET_USER FLEET_CLIENT_KEY
#                                    # FLEET_KNOWN_HOSTS FLEET_NAMES[] FLEET_PORTS[] FLEET_ROOTS[]
#                                    # FLEET_SSH_OPTIONS[] (for a plain `ssh` to the hosts)
#   fleet_up 2 --first-deploy        # also GUIDE_HOME GUIDE_PROJECT GUIDE_SCRIPT GUIDE_BIN: README's
#                                    # "Your first deploy" against these hosts (examples/testfleet.rs)
#   cat >>"$FLEET_INVENTORY" <<EOF   # deploy.toml holds [ssh] and the [[hosts]]: add the rest
#
# The fleet stops (every sshd, by PID) and its directory goes away when fleet_down closes the
# test fleet's stdin, and also when this shell dies in any way. DEPLOY_FLEET_KEEP=1 keeps the
# directory (keys, configs, webN/sshd.log, host roots).

COMMON_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
FLEET_PID=""
FLEET_STDIN=""
# Set by fleet_up, from the fleet's fleet.env (used by the scripts that source this file).
# shellcheck disable=SC2034
{
  FLEET_DIR=""
  FLEET_INVENTORY=""
  FLEET_USER=""
  FLEET_CLIENT_KEY=""
  FLEET_KNOWN_HOSTS=""
  FLEET_NAMES=()
  FLEET_PORTS=()
  FLEET_ROOTS=()
  FLEET_SSH_OPTIONS=()
}

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs Debian packages when running as root with apt-get, else fails with a hint.
#   apt_install "what needs it" pkg...
apt_install() {
  local why=$1
  shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $* ($why)"
    apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
      || die "apt-get install $* failed"
  else
    die "$why: missing $*. Install it (Debian: sudo apt-get install $*) and run again."
  fi
}

# OpenSSH server and client (sshd, ssh-keygen, ssh), tar, gzip, ps; /run/sshd when root.
require_openssh() {
  local missing=()
  [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || missing+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  command -v tar >/dev/null 2>&1 || missing+=(tar)
  command -v gzip >/dev/null 2>&1 || missing+=(gzip)
  command -v ps >/dev/null 2>&1 || missing+=(procps)
  if [ ${#missing[@]} -gt 0 ]; then
    # openssh-client may be listed twice; apt-get does not mind.
    apt_install "the local fleet needs OpenSSH (sshd, ssh-keygen, ssh)" "${missing[@]}"
  fi
  # sshd run as root refuses to start without its privilege separation directory.
  if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd && chmod 0755 /run/sshd
  fi
}

# Dies unless each NAME=VALUE argument's value is a positive integer (the benchmarks' settings).
#   positive_integers BENCH_ROUNDS="$rounds" BENCH_HOSTS="$host_count"
positive_integers() {
  local pair
  for pair in "$@"; do
    case ${pair#*=} in '' | *[!0-9]* | 0) die "${pair%%=*} must be a positive integer (got '${pair#*=}')" ;; esac
  done
}

# pssh's path (parallel-ssh or pssh), installed with apt-get when missing and running as root;
# empty when it cannot be had.
find_pssh() {
  local found
  found=$(command -v parallel-ssh || command -v pssh || true)
  if [ -z "$found" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "trying to install pssh (the comparison tool)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pssh >&2 || true
    found=$(command -v parallel-ssh || command -v pssh || true)
  fi
  printf '%s' "$found"
}

# The [deploy] and [services.bench] tables a benchmark appends to the fleet's deploy.toml
# (which holds its [ssh] table and [[hosts]]): bench_tables CONCURRENCY [BASE_DIR].
bench_tables() {
  cat <<EOF
[deploy]
concurrency = $1
host_timeout = "10m"

[services.bench]
base_dir = "${2:-app}"
keep_releases = 2
EOF
}

# Builds deploy and the test fleet (examples/testfleet.rs) with cargo, in one go.
# $1: release | debug. Sets DEPLOY_PATH and TESTFLEET_PATH.
# DEPLOY_BIN=path uses that deploy binary (the test fleet is still built).
build_deploy() {
  local profile=${1:-release}
  command -v cargo >/dev/null 2>&1 \
    || die "cargo not found: install Rust (https://rustup.rs); the local fleet is built from this repository"
  local flags=() dir=debug targets=(--example testfleet)
  if [ "$profile" = release ]; then flags=(--release); dir=release; fi
  if [ -n "${DEPLOY_BIN:-}" ]; then
    [ -x "$DEPLOY_BIN" ] || die "DEPLOY_BIN=$DEPLOY_BIN is not an executable"
  else
    targets+=(--bin deploy)
  fi
  log "building ${targets[*]} (cargo build ${flags[*]:-(debug)})"
  (cd "$COMMON_REPO_ROOT" && cargo build "${flags[@]}" "${targets[@]}" >&2) || die "cargo build failed"
  local target=${CARGO_TARGET_DIR:-$COMMON_REPO_ROOT/target}
  case $target in /*) ;; *) target=$COMMON_REPO_ROOT/$target ;; esac
  TESTFLEET_PATH=$target/$dir/examples/testfleet
  DEPLOY_PATH=${DEPLOY_BIN:-$target/$dir/deploy}
  [ -x "$TESTFLEET_PATH" ] || die "built test fleet not found at $TESTFLEET_PATH"
  [ -x "$DEPLOY_PATH" ] || die "built binary not found at $DEPLOY_PATH"
}

# Starts the test fleet with hosts web1..web$1 (in $TMPDIR) and sources its fleet.env; further
# arguments go to the test fleet (--first-deploy). It runs as a coprocess: it stays up while its
# stdin (our end of the pipe) is open.
fleet_up() {
  local count=$1 inventory keep=()
  shift
  [ -n "${TESTFLEET_PATH:-}" ] || die "fleet_up: call build_deploy first"
  [ "${DEPLOY_FLEET_KEEP:-}" = 1 ] && keep=(--keep)
  coproc TESTFLEET { DEPLOY_TEST_BINARY=$DEPLOY_PATH exec "$TESTFLEET_PATH" start "$count" --quiet "${keep[@]}" "$@"; }
  FLEET_PID=$TESTFLEET_PID
  FLEET_STDIN=${TESTFLEET[1]}
  # One line, once every host accepts connections: the inventory's path.
  if ! IFS= read -r inventory <&"${TESTFLEET[0]}" || [ ! -f "$inventory" ]; then
    fleet_down
    die "the local fleet did not start (its error is above)"
  fi
  # shellcheck source=/dev/null
  . "$(dirname "$inventory")/fleet.env"
  [ "$FLEET_INVENTORY" = "$inventory" ] || die "unexpected fleet.env next to $inventory"
  # The plain OpenSSH client's options for this fleet: its key, strict known_hosts, nothing else.
  FLEET_SSH_OPTIONS=(-F /dev/null -i "$FLEET_CLIENT_KEY" -o IdentitiesOnly=yes -o UserKnownHostsFile="$FLEET_KNOWN_HOSTS"
    -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR)
}

# Stops the test fleet, if one is up: end of file on its stdin, then wait for it (it stops every
# sshd by PID and removes its directory). Never fails (it runs from EXIT traps, under set -e).
fleet_down() {
  [ -n "$FLEET_PID" ] || return 0
  if [ -n "$FLEET_STDIN" ]; then
    eval "exec $FLEET_STDIN>&-" 2>/dev/null || true
  fi
  wait "$FLEET_PID" 2>/dev/null || true
  FLEET_PID=""
  FLEET_STDIN=""
  return 0
}

# Every descendant PID of the given PIDs (from `ps`), deepest last.
descendants() {
  ps -e -o pid= -o ppid= 2>/dev/null | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) { want[r[i]] = 1; queue[++q] = r[i] } }
    { kids[$2] = kids[$2] " " $1 }
    END {
      for (h = 1; h <= q; h++) {
        m = split(kids[queue[h]], k, " ")
        for (j = 1; j <= m; j++) if (!(k[j] in want)) { want[k[j]] = 1; queue[++q] = k[j]; print k[j] }
      }
    }'
}

# SIGTERM the given PIDs (children of this shell) and everything below them, SIGKILL after 2 s;
# reap.
kill_tree() {
  [ $# -gt 0 ] || return 0
  local targets pid alive waited
  targets="$* $(descendants "$@" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  kill -TERM $targets 2>/dev/null || true
  waited=0
  while [ $waited -lt 100 ]; do # 100 x 20 ms = 2 s
    alive=""
    for pid in $targets; do
      if kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        alive="$alive $pid"
      fi
    done
    [ -z "$alive" ] && break
    sleep 0.02
    waited=$((waited + 1))
  done
  # shellcheck disable=SC2086
  [ -z "$alive" ] || kill -KILL $alive 2>/dev/null || true
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
  return 0
}

# ---------------------------------------------------------------------------------------------
# What every benchmark shares: its clean-up traps, its clock, starting its fleet.

# Timed runs still going (PIDs); the EXIT trap kills each with everything below it.
child_pids=()

# What a benchmark stops besides its timed runs and the fleet (a bastion, data generators):
# it redefines this.
bench_stop_extra() { :; }

# On exit: kill the timed runs, the extras, then the fleet, whatever fails on the way; Ctrl-C
# exits 130, TERM/HUP 143 (both through the EXIT trap).
bench_traps() {
  trap bench_cleanup EXIT
  trap 'echo "interrupted" >&2; exit 130' INT
  trap 'exit 143' TERM HUP
}

bench_cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  set +e
  if [ ${#child_pids[@]} -gt 0 ]; then kill_tree "${child_pids[@]}"; fi
  bench_stop_extra
  fleet_down
  exit "$status"
}

now() { date +%s.%N; }

# Seconds from $1 to $2 (both from `now`), with $3 decimals (default 3).
elapsed() { awk -v a="$1" -v b="$2" -v d="${3:-3}" 'BEGIN { printf "%.*f", d, b - a }'; }

# Starts a fleet of $1 hosts (fleet_up), says where it lives, and changes into its directory.
start_fleet() {
  log "starting a local fleet of $1 sshd hosts on 127.0.0.1"
  fleet_up "$1"
  log "the fleet lives in $FLEET_DIR"
  cd "$FLEET_DIR"
}
