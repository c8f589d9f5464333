#!/usr/bin/env bash
# A self-contained tour of `deploy` against a throw-away local fleet.
#
# On a fresh Debian machine it installs what it needs (openssh-server, when run as root), builds
# deploy and the local test fleet (release; DEPLOY_DEMO_DEBUG=1 for a debug build; DEPLOY_BIN=path
# to use that deploy binary), starts two real OpenSSH sshd "hosts" web1 and web2 on 127.0.0.1
# with the integration tests' own fleet (examples/testfleet.rs: free ports, strict host keys,
# each host confined to its own directory), then runs:
#
#   1. README.md "Your first deploy", as written: the blocks tests/it/first_deploy.rs runs (taken
#      out of README.md by the fleet's --first-deploy, with the controller's ~/.ssh/config and
#      the hosts' sudo/systemctl stand-ins): deploy init, build app.tar.gz, check, push
#      --dry-run, push 1.0.0, push 1.0.1, status, rollback, history;
#   2. a short tour on top: exec in the live release, run the restart task, status.
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

echo "starting a local fleet of 2 sshd hosts on 127.0.0.1" >&2
fleet_up 2 --first-deploy
echo "the fleet lives in $FLEET_DIR" >&2

# Every command runs in the guide's project directory, as the guide's controller: its HOME
# (~/.ssh/config naming web1 and web2), deploy first on PATH, no agent.
cd "$GUIDE_PROJECT"
controller() {
  env -u SSH_AUTH_SOCK -u RUST_LOG HOME="$GUIDE_HOME" PATH="$GUIDE_BIN:$PATH" "$@"
}

# ---------------------------------------------------------------------------------------------
# 1. The guide, as written

printf '\n'
bold "== README.md \"Your first deploy\", run as written (each command shown after +)"
rc=0
controller bash -eux -o pipefail "$GUIDE_SCRIPT" || rc=$?
if [ "$rc" != 0 ]; then
  echo "demo: the guide failed with exit status $rc (the command above the error)" >&2
  exit "$rc"
fi

# ---------------------------------------------------------------------------------------------
# 2. A short tour on top

step_no=0
header() {
  step_no=$((step_no + 1))
  printf '\n'
  bold "== $step_no. $1"
  printf '$ deploy %s\n' "$2"
}

# step "title" args...: must succeed.
step() {
  local title=$1
  shift
  header "$title" "$*"
  local rc=0
  controller "$deploy_bin" "$@" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "demo: step $step_no ($title) failed with exit status $rc" >&2
    exit "$rc"
  fi
}

step "what each host runs: a command in the live release" exec --service myapp -- cat VERSION
step "the service's restart task (sudo -n systemctl restart myapp)" run restart
step "status: both hosts live on 1.0.0, 1.0.1 kept" status

printf '\n'
bold "== what the hosts hold"
for i in "${!FLEET_NAMES[@]}"; do
  app=${FLEET_ROOTS[$i]}/myapp
  live=$(readlink "$app/current" 2>/dev/null || echo "(none)")
  releases=$(ls "$app/releases" 2>/dev/null | tr '\n' ' ')
  restarts=$(grep -c '^restart' "$(dirname "${FLEET_ROOTS[$i]}")/systemctl.log" 2>/dev/null || echo 0)
  printf '%s: current -> %s   releases: %s  restarts: %s\n' "${FLEET_NAMES[$i]}" "$live" "${releases:-(none)}" "$restarts"
done
printf '\ndemo finished: every step worked\n'
