# shellcheck shell=bash
# A local test fleet for scripts/demo.sh and scripts/bench.sh: real OpenSSH sshd "hosts" on
# 127.0.0.1, the same way the integration tests build theirs (tests/it/support/mod.rs).
#
# Every host webN is one `sshd -D` with its own ed25519 host key, its own free port on 127.0.0.1
# and its own login directory ("root"). All hosts run as the current user, so each host's
# ForceCommand is a small generated script that cd's into that host's root before running the
# requested command: relative remote paths (base_dir = "app") resolve inside the host's own root
# and the hosts are isolated from each other. Host keys are checked strictly through a generated
# known_hosts file ("[127.0.0.1]:PORT ssh-ed25519 ..."); nothing accepts unknown keys, nothing
# talks to anything but 127.0.0.1.
#
# Sourced, not run. Usage:
#   . scripts/lib/fleet.sh
#   fleet_require_openssh             # installs openssh-server on Debian when root, else fails
#   fleet_init "$(mktemp -d ...)"      # temp dir, client key; sets FLEET_* variables
#   trap fleet_cleanup EXIT            # kills every sshd by PID, removes the temp dir
#   fleet_start 3                      # web1..web3
#   fleet_inventory_header > "$FLEET_DIR/deploy.toml"
#   deploy_bin=$(fleet_build_deploy release)
#
# Variables set: FLEET_DIR FLEET_USER FLEET_CLIENT_KEY FLEET_KNOWN_HOSTS FLEET_SSHD
# FLEET_NAMES[] FLEET_PORTS[] FLEET_ROOTS[] FLEET_PIDS[] (index 0 = web1).
# Set DEPLOY_FLEET_KEEP=1 to keep the temp dir (keys, configs, sshd.log, host roots).

FLEET_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
FLEET_DIR=""
FLEET_USER=""
FLEET_CLIENT_KEY=""
FLEET_KNOWN_HOSTS=""
FLEET_SSHD=""
FLEET_NAMES=()
FLEET_PORTS=()
FLEET_ROOTS=()
FLEET_PIDS=()

fleet_log() { printf '%s\n' "$*" >&2; }
fleet_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs Debian packages when running as root with apt-get, else fails with a hint.
#   fleet_apt_install "what needs it" pkg...
fleet_apt_install() {
  local why=$1
  shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    fleet_log "installing $* ($why)"
    apt-get update -qq >&2 || fleet_die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
      || fleet_die "apt-get install $* failed"
  else
    fleet_die "$why: missing $*. Install it (Debian: sudo apt-get install $*) and run again."
  fi
}

# OpenSSH server and client (sshd, ssh-keygen, ssh), tar, gzip; /run/sshd when root.
fleet_require_openssh() {
  local missing=()
  [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || missing+=(openssh-server)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  command -v tar >/dev/null 2>&1 || missing+=(tar)
  command -v gzip >/dev/null 2>&1 || missing+=(gzip)
  command -v ps >/dev/null 2>&1 || missing+=(procps)
  if [ ${#missing[@]} -gt 0 ]; then
    # openssh-client may be listed twice; apt-get does not mind.
    fleet_apt_install "the local fleet needs OpenSSH (sshd, ssh-keygen, ssh)" "${missing[@]}"
  fi
  if [ -x /usr/sbin/sshd ]; then
    FLEET_SSHD=/usr/sbin/sshd
  else
    FLEET_SSHD=$(command -v sshd) || fleet_die "sshd not found after install"
    FLEET_SSHD=$(cd "$(dirname "$FLEET_SSHD")" && pwd -P)/$(basename "$FLEET_SSHD") # sshd needs an absolute path
  fi
  # sshd run as root refuses to start without its privilege separation directory.
  if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd && chmod 0755 /run/sshd
  fi
}

# Builds deploy with cargo and prints the binary's path. $1: release | debug.
# DEPLOY_BIN=path skips the build and uses that binary.
fleet_build_deploy() {
  local profile=${1:-release}
  if [ -n "${DEPLOY_BIN:-}" ]; then
    [ -x "$DEPLOY_BIN" ] || fleet_die "DEPLOY_BIN=$DEPLOY_BIN is not an executable"
    printf '%s\n' "$DEPLOY_BIN"
    return
  fi
  command -v cargo >/dev/null 2>&1 \
    || fleet_die "cargo not found: install Rust (https://rustup.rs) or set DEPLOY_BIN to a built deploy binary"
  local flags=() dir=debug
  if [ "$profile" = release ]; then flags=(--release); dir=release; fi
  fleet_log "building deploy (cargo build ${flags[*]:-(debug)})"
  (cd "$FLEET_REPO_ROOT" && cargo build "${flags[@]}" --bin deploy >&2) || fleet_die "cargo build failed"
  local target=${CARGO_TARGET_DIR:-$FLEET_REPO_ROOT/target}
  case $target in /*) ;; *) target=$FLEET_REPO_ROOT/$target ;; esac
  [ -x "$target/$dir/deploy" ] || fleet_die "built binary not found at $target/$dir/deploy"
  printf '%s\n' "$target/$dir/deploy"
}

# $1: the fleet's (empty, fresh) temp dir.
fleet_init() {
  FLEET_DIR=$(cd "$1" && pwd -P) || fleet_die "no such dir: $1" # canonical: equals `pwd` on a host
  case $FLEET_DIR in *'"'* | *"'"* | *'%'* | *' '*) fleet_die "unusable fleet dir path: $FLEET_DIR" ;; esac
  FLEET_USER=$(id -un 2>/dev/null || printf '%s' "${USER:-${LOGNAME:-}}")
  [ -n "$FLEET_USER" ] || fleet_die "could not determine the current user name"
  FLEET_CLIENT_KEY=$FLEET_DIR/client_key
  FLEET_KNOWN_HOSTS=$FLEET_DIR/known_hosts
  fleet_keygen "$FLEET_CLIENT_KEY"
  : >"$FLEET_KNOWN_HOSTS"
}

fleet_keygen() {
  rm -f "$1" "$1.pub"
  ssh-keygen -q -t ed25519 -N '' -C deploy-fleet -f "$1" </dev/null >/dev/null \
    || fleet_die "ssh-keygen -f $1 failed"
}

# `ssh-ed25519 AAAA...` without the comment.
fleet_pubkey() { awk '{ print $1 " " $2; exit }' "$1.pub"; }

# A TCP port on 127.0.0.1 that nothing answers on right now. sshd's own bind is the real test:
# fleet_start retries with another port when the bind fails.
fleet_pick_port() {
  local port tries=0
  while [ $tries -lt 200 ]; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return
    fi
    tries=$((tries + 1))
  done
  fleet_die "could not find a free port on 127.0.0.1"
}

# Writes host $1's files (name $2, port $3).
fleet_write_host_files() {
  local dir=$1 name=$2 port=$3
  cat >"$dir/shell" <<EOF
#!/bin/sh
# test host $name: every ssh login runs here (sshd ForceCommand)
cd '$dir/root' || exit 1
if [ -z "\$SSH_ORIGINAL_COMMAND" ]; then exec /bin/sh; fi
exec /bin/sh -c "\$SSH_ORIGINAL_COMMAND"
EOF
  chmod 0755 "$dir/shell"
  fleet_pubkey "$FLEET_CLIENT_KEY" >"$dir/authorized_keys"
  cat >"$dir/sshd_config" <<EOF
# sshd for local fleet host $name
Port $port
ListenAddress 127.0.0.1
HostKey "$dir/ssh_host_ed25519_key"
PidFile "$dir/sshd.pid"
AuthorizedKeysFile "$dir/authorized_keys"
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
MaxStartups 100:30:200
MaxSessions 50
SetEnv SHLVL=1
LogLevel ERROR
ForceCommand '$dir/shell'
EOF
}

# Starts hosts web1..web$1 (appending to the FLEET_* arrays) and writes known_hosts.
fleet_start() {
  local count=$1 index name dir port pid attempt started waited
  for ((index = 1; index <= count; index++)); do
    name=web$index
    dir=$FLEET_DIR/$name
    mkdir -p "$dir/root"
    fleet_keygen "$dir/ssh_host_ed25519_key"
    started=""
    for attempt in 1 2 3 4 5; do
      port=$(fleet_pick_port)
      fleet_write_host_files "$dir" "$name" "$port"
      rm -f "$dir/sshd.pid"
      : >"$dir/sshd.log"
      "$FLEET_SSHD" -D -e -f "$dir/sshd_config" </dev/null >>"$dir/sshd.log" 2>&1 &
      pid=$!
      FLEET_PIDS+=("$pid") # recorded at once, so cleanup stops it whatever happens next
      # sshd writes its PidFile only once it has bound its port.
      waited=0
      while [ $waited -lt 500 ]; do # 500 x 20 ms = 10 s
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        if [ "$(cat "$dir/sshd.pid" 2>/dev/null)" = "$pid" ] \
          && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
          started=1
          break
        fi
        sleep 0.02
        waited=$((waited + 1))
      done
      [ -n "$started" ] && break
      fleet_kill_tree "$pid"
      if grep -qE 'Address already in use|Cannot bind any address' "$dir/sshd.log"; then
        continue # port taken meanwhile: try another one
      fi
      fleet_die "sshd for $name (port $port) did not start; $dir/sshd.log:
$(cat "$dir/sshd.log")"
    done
    [ -n "$started" ] || fleet_die "sshd for $name could not bind a free port"
    FLEET_NAMES+=("$name")
    FLEET_PORTS+=("$port")
    FLEET_ROOTS+=("$dir/root")
    printf '[127.0.0.1]:%s %s\n' "$port" "$(fleet_pubkey "$dir/ssh_host_ed25519_key")" >>"$FLEET_KNOWN_HOSTS"
  done
}

# A TOML basic string.
fleet_toml_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# The inventory's [ssh] table and one [[hosts]] entry per host (tags "web" and odd/even).
fleet_inventory_header() {
  printf '[ssh]\nuser = %s\nidentity_files = [%s]\nknown_hosts = [%s]\nhost_key_policy = "strict"\nconnect_timeout = "5s"\n\n' \
    "$(fleet_toml_string "$FLEET_USER")" \
    "$(fleet_toml_string "$FLEET_CLIENT_KEY")" \
    "$(fleet_toml_string "$FLEET_KNOWN_HOSTS")"
  local i parity
  for i in "${!FLEET_NAMES[@]}"; do
    if [ $((i % 2)) = 0 ]; then parity=odd; else parity=even; fi
    printf '[[hosts]]\nname = "%s"\naddress = "127.0.0.1"\nport = %s\ntags = ["web", "%s"]\n\n' \
      "${FLEET_NAMES[$i]}" "${FLEET_PORTS[$i]}" "$parity"
  done
}

# Plain OpenSSH to host index $1 (0-based), strict host keys, the fleet's key only; rest: command.
fleet_ssh() {
  local i=$1
  shift
  env -u SSH_AUTH_SOCK ssh -F /dev/null -i "$FLEET_CLIENT_KEY" -o IdentitiesOnly=yes \
    -o UserKnownHostsFile="$FLEET_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR \
    -p "${FLEET_PORTS[$i]}" "$FLEET_USER@127.0.0.1" "$@"
}

# Every descendant PID of the given PIDs (from `ps`), deepest last.
fleet_descendants() {
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

# SIGTERM the given PIDs and everything below them (sshd sessions), SIGKILL after 2 s; reap.
fleet_kill_tree() {
  [ $# -gt 0 ] || return 0
  local targets pid alive waited
  targets="$* $(fleet_descendants "$@" | tr '\n' ' ')"
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

# Stops every sshd this fleet started (by PID) and removes the temp dir. Safe to call twice.
# Never fails (it runs from EXIT traps, possibly under set -e).
fleet_cleanup() {
  if [ ${#FLEET_PIDS[@]} -gt 0 ]; then
    fleet_kill_tree "${FLEET_PIDS[@]}"
    FLEET_PIDS=()
  fi
  if [ -n "$FLEET_DIR" ] && [ -d "$FLEET_DIR" ]; then
    if [ "${DEPLOY_FLEET_KEEP:-}" = 1 ]; then
      fleet_log "DEPLOY_FLEET_KEEP=1: keeping $FLEET_DIR (sshd logs: $FLEET_DIR/webN/sshd.log)"
    else
      rm -rf -- "$FLEET_DIR" || true
    fi
  fi
  FLEET_DIR=""
}
