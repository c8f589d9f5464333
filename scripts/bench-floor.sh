#!/usr/bin/env bash
# Issue 17's "push to 100 hosts at least 3x faster than pssh", against what the hosts' side of a
# push costs at the least. On this loopback fleet the hosts' sshd processes run on the
# controller's CPUs, so a CPU-bound push's wall time follows the machine's total CPU, the
# controller's plus the hosts'. The script measures, per run, interleaved, with a 1 MB artifact
# (new bytes every round) to BENCH_HOSTS hosts at -j BENCH_JOBS:
#
#   pssh      parallel-ssh -I: `mkdir -p DIR && tar -xzf - -C DIR` (scripts/bench-scale.sh's pssh)
#   minimal   the same pssh carrying the least a safe push does on a host, in one session: extract
#             into a staging directory while hashing the stream, compare the sha256, rename the
#             staging directory into place, switch `current` by rename, append a history line (no
#             lock, no barrier, no pruning: less than `deploy push` must do)
#   deploy    `deploy push`
#
# and splits each run's CPU: the machine's (from /proc/stat), the local tree's (the controller,
# or pssh and its ssh clients: user + sys of the command and its children) and the hosts' (the
# difference: sshd, the login shells and what the commands run). It prints medians and the
# ceiling any tool that does at least `minimal`'s host work can reach against pssh here:
# pssh's machine CPU / (minimal's host CPU + deploy's local CPU).
#
# A measurement, not a test: exits 0 unless something failed to run. Environment:
#   BENCH_ROUNDS=3        rounds
#   BENCH_HOSTS=100       hosts in the fleet
#   BENCH_JOBS=50         concurrency of every tool
#   BENCH_PROFILE=release build profile
#   DEPLOY_BIN=path       measure this deploy binary
#   DEPLOY_FLEET_KEEP=1   keep the fleet's directory
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$script_dir/lib/common.sh"

rounds=${BENCH_ROUNDS:-3}
host_count=${BENCH_HOSTS:-100}
jobs=${BENCH_JOBS:-50}
profile=${BENCH_PROFILE:-release}
positive_integers BENCH_ROUNDS="$rounds" BENCH_HOSTS="$host_count" BENCH_JOBS="$jobs"
[ -r /proc/stat ] || die "/proc/stat is needed to read the machine's CPU time"

bench_traps

require_openssh
pssh_bin=$(find_pssh)
[ -n "$pssh_bin" ] || die "pssh (the comparison tool) is missing and could not be installed: apt-get install pssh"
build_deploy "$profile"
deploy_bin=$DEPLOY_PATH
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_fleet "$host_count"
sed -i "s/^connect_timeout = .*/connect_timeout = \"60s\"/" deploy.toml # a loaded machine is not a dead host
bench_tables "$jobs" >>deploy.toml
printf '%s\n' "${FLEET_PORTS[@]}" | sed "s/^/$FLEET_USER@127.0.0.1:/" >pssh.hosts
ssh_options="${FLEET_SSH_OPTIONS[*]}"

ticks=$(getconf CLK_TCK)
# The machine's busy CPU time so far, in clock ticks (user, nice, system, irq, softirq).
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

results=results.tsv
: >"$results"
# measure KIND COMMAND...: runs it (stdin: the round's artifact), records wall, machine, local
# and host CPU seconds.
measure() {
  local kind=$1 rc=0 b0 b1 t0 t1 TIMEFORMAT='%3U %3S'
  shift
  sync
  b0=$(busy)
  t0=$(now)
  { time "$@" <"$artifact" >run.out 2>run.err || rc=$?; } 2>run.time
  t1=$(now)
  b1=$(busy)
  if [ "$rc" != 0 ]; then
    log "$kind failed (exit $rc):"
    tail -n 20 run.err run.out >&2
    exit 1
  fi
  awk -v k="$kind" -v w="$(elapsed "$t0" "$t1")" -v m="$((b1 - b0))" -v hz="$ticks" \
    '{ local = $1 + $2; machine = m / hz; printf "%s\t%.3f\t%.3f\t%.3f\t%.3f\n", k, w, machine, local, machine - local }' \
    run.time | tee -a "$results" | awk -F'\t' '{ printf "%-8s wall %6.2f s  machine %6.2f s  local %6.2f s  hosts %6.2f s\n", $1, $2, $3, $4, $5 }' >&2
}

pssh_push() { "$pssh_bin" -h pssh.hosts -p "$jobs" -t 0 -I -x "$ssh_options" "$1"; }
deploy_push() {
  env -u SSH_AUTH_SOCK -u RUST_LOG NO_COLOR=1 "$deploy_bin" -i deploy.toml push --version "$1" \
    --artifact "$artifact" --no-progress -q --output json
}

# Host keys checked and connections warm before anything is timed.
env -u SSH_AUTH_SOCK NO_COLOR=1 "$deploy_bin" -i deploy.toml check -q --no-progress >/dev/null \
  || die "deploy check failed on the fresh fleet"

for round in $(seq "$rounds"); do
  release=r$round
  mkdir -p src
  head -c 1000000 /dev/urandom >src/blob
  artifact=$FLEET_DIR/a1mb-$release.tar.gz
  tar -czf "$artifact" -C src .
  rm -rf src
  sha=$(sha256sum "$artifact" | cut -d' ' -f1)
  bare="mkdir -p pssh/releases/$release && tar -xzf - -C pssh/releases/$release"
  minimal="set -e; d=min/releases/$release; mkdir -p \$d.staging
{ tee /dev/fd/3 | tar -xzf - -C \$d.staging; } 3>&1 | sha256sum > \$d.sum
read -r digest rest < \$d.sum; [ \"\$digest\" = $sha ]
mv \$d.staging \$d; ln -sfn releases/$release min/current.tmp; mv -T min/current.tmp min/current
printf '%s\\n' $release >> min/history"
  log "round $round"
  # Interleaved: the order turns each round.
  for which in $(case $((round % 3)) in 1) echo "pssh minimal deploy" ;; 2) echo "minimal deploy pssh" ;; *) echo "deploy pssh minimal" ;; esac); do
    case $which in
      pssh) measure pssh pssh_push "$bare" ;;
      minimal) measure minimal pssh_push "$minimal" ;;
      deploy) measure deploy deploy_push "$release" ;;
    esac
  done
done

# ---------------------------------------------------------------------------------------------
# Report: medians per kind and column (2 wall, 3 machine, 4 local, 5 hosts).

median() {
  awk -F'\t' -v k="$1" -v c="$2" '$1 == k { print $c }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
printf '\n1 MB push to %s hosts at -j %s, %s CPUs, medians of %s rounds (seconds)\n' \
  "$host_count" "$jobs" "$(nproc 2>/dev/null || echo '?')" "$rounds"
printf '%-8s %8s %9s %8s %8s\n' run wall machine local hosts
for kind in pssh minimal deploy; do
  printf '%-8s %8s %9s %8s %8s\n' "$kind" "$(median "$kind" 2)" "$(median "$kind" 3)" "$(median "$kind" 4)" "$(median "$kind" 5)"
done
pssh_machine=$(median pssh 3)
floor=$(awk -v a="$(median minimal 5)" -v b="$(median deploy 4)" 'BEGIN { printf "%.2f", a + b }')
printf '\npssh / deploy wall time:                       x%s (target >= 3)\n' \
  "$(awk -v a="$(median pssh 2)" -v b="$(median deploy 2)" 'BEGIN { printf "%.2f", a / b }')"
printf 'ceiling when wall follows CPU: pssh machine %s s / (minimal host %s s + deploy local %s s) = x%s\n' \
  "$pssh_machine" "$(median minimal 5)" "$(median deploy 4)" \
  "$(awk -v a="$pssh_machine" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')"
