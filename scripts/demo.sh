#!/usr/bin/env bash
# A self-contained tour of `deploy` against a throw-away local fleet.
#
# On a fresh Debian machine it installs what it needs (openssh-server, when run as root), builds
# deploy and the local test fleet (release; DEPLOY_DEMO_DEBUG=1 for a debug build; DEPLOY_BIN=path
# to use that deploy binary), starts three real OpenSSH sshd "hosts" web1..web3 on 127.0.0.1 with
# the integration tests' own fleet (examples/testfleet.rs: free ports, strict host keys, each host
# confined to its own directory), writes an inventory and two sample releases, then runs:
#
#   deploy check / status / push v1 / push v2 / status / rollback --hosts web3 / status /
#   history --hosts web1
#
# Everything (sshd processes, temp dir) is torn down on exit, failure or Ctrl-C.
# DEPLOY_FLEET_KEEP=1 keeps the temp dir for a look around. Exit status: 0 when every step that
# should work did; otherwise the failing step's exit status.
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$script_dir/lib/common.sh"

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  set +e # clean up everything, whatever fails on the way
  fleet_down
  exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'exit 143' TERM HUP

bold() { if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }

require_openssh
profile=release
[ "${DEPLOY_DEMO_DEBUG:-}" = 1 ] && profile=debug
build_deploy "$profile"
deploy_bin=$DEPLOY_PATH

echo "starting a local fleet of 3 sshd hosts on 127.0.0.1" >&2
fleet_up 3
echo "the fleet lives in $FLEET_DIR" >&2

# ---------------------------------------------------------------------------------------------
# Inventory and releases

cd "$FLEET_DIR"
# deploy.toml holds the fleet's [ssh] table and its [[hosts]]; the rest is the demo's.
cat >>deploy.toml <<'EOF'
[deploy]
concurrency = 10
on_failure = "rollback"

[services.demo]
base_dir = "app"            # relative to each host's login directory
keep_releases = 3
shared_paths = ["log"]
EOF

make_release() { # $1: version
  local v=$1 src=$1.src
  rm -rf "$src"
  mkdir -p "$src/bin" "$src/static"
  printf '<!doctype html>\n<title>demo</title>\n<h1>demo %s</h1>\n' "$v" >"$src/index.html"
  printf '%s\n' "$v" >"$src/VERSION"
  printf '#!/bin/sh\necho "demo %s running" >> log/app.log\n' "$v" >"$src/bin/run"
  chmod 0755 "$src/bin/run"
  printf 'body { color: #%s; }\n' "$( [ "$v" = v1 ] && echo 333 || echo 036)" >"$src/static/app.css"
  if [ "$v" = v2 ]; then printf 'new in v2\n' >"$src/CHANGES"; fi
  tar -czf "$v.tar.gz" -C "$src" .
}
make_release v1
make_release v2

# ---------------------------------------------------------------------------------------------
# Steps

step_no=0
header() {
  step_no=$((step_no + 1))
  printf '\n'
  bold "== $step_no. $1"
  printf '$ deploy %s\n' "$2"
}

run_deploy() {
  env -u SSH_AUTH_SOCK -u RUST_LOG "$deploy_bin" "$@"
}

# step "title" args...: must succeed.
step() {
  local title=$1
  shift
  header "$title" "$*"
  local rc=0
  run_deploy "$@" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "demo: step $step_no ($title) failed with exit status $rc" >&2
    exit "$rc"
  fi
}

# optional_step "title" COMMAND args...: like step, but a build that does not have COMMAND yet
# ("not available") only gets a notice.
skipped=()
optional_step() {
  local title=$1 command=$2
  shift 2
  header "$title" "$*"
  local rc=0 err
  err=$(mktemp "$FLEET_DIR/stderr.XXXXXX")
  run_deploy "$@" 2>"$err" || rc=$?
  cat "$err" >&2
  if [ "$rc" != 0 ]; then
    if grep -qi 'not available' "$err"; then
      echo "notice: \`deploy $command\` is not available in this build yet; skipping this step"
      skipped+=("$command")
      return 0
    fi
    echo "demo: step $step_no ($title) failed with exit status $rc" >&2
    exit "$rc"
  fi
}

step "check the inventory, connectivity and remote prerequisites" -i deploy.toml check
step "status before anything was deployed" -i deploy.toml status
step "push v1 to every host" -i deploy.toml push --version v1 --artifact v1.tar.gz
step "push v2 to every host" -i deploy.toml push --version v2 --artifact v2.tar.gz
step "status: every host live on v2, v1 kept as previous" -i deploy.toml status
optional_step "roll web3 back to v1" rollback -i deploy.toml rollback --hosts web3
step "status after the rollback" -i deploy.toml status
optional_step "web1's audit history, newest first" history -i deploy.toml history --hosts web1

printf '\n'
bold "== what the hosts hold"
for i in "${!FLEET_NAMES[@]}"; do
  app=${FLEET_ROOTS[$i]}/app
  live=$(readlink "$app/current" 2>/dev/null || echo "(none)")
  releases=$(ls "$app/releases" 2>/dev/null | tr '\n' ' ')
  printf '%s: current -> %s   releases: %s\n' "${FLEET_NAMES[$i]}" "$live" "${releases:-(none)}"
done
if [ ${#skipped[@]} -gt 0 ]; then
  printf '\ndemo finished: every step worked (skipped, not available in this build: %s)\n' "${skipped[*]}"
else
  printf '\ndemo finished: every step worked\n'
fi
