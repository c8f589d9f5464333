#!/usr/bin/env bash
# Issue 17's known_hosts target: a 50,000-line known_hosts adds less than 10% to `deploy status`
# on 100 hosts. Measured against a throw-away local fleet of real OpenSSH sshd hosts on 127.0.0.1
# (scripts/lib/common.sh), as the controller's CPU seconds (user + sys, from bash's `time` to the
# millisecond: /usr/bin/time truncates each to 10 ms, as coarse as the whole 10% margin) of
# `deploy status` with three known_hosts files that trust the same hosts:
#
#   small   the fleet's own lines (one per host)
#   plain   50,000 lines of other hosts (`name,address ssh-ed25519 ...`), then the fleet's lines
#   hashed  (BENCH_HASHED=1 only) the same 50,000 lines hashed by `ssh-keygen -H` (OpenSSH's
#           HashKnownHosts), then the fleet's lines. A hashed line can only be matched by
#           computing HMAC-SHA1(salt, name) for every host, so its cost grows with lines x hosts
#           (as it does for OpenSSH, once per connection); expect it to miss the target.
#
# Rounds are interleaved (small, plain, hashed, ...); medians are printed with the ratio to
# `small` and PASS/MISS against 1.10. The ratio is what matters: absolute CPU depends on the
# build profile and the machine. A measurement, not a test: exits 0 unless something failed to
# run. Environment:
#   BENCH_ROUNDS=15       rounds (the file adds ~8 ms to ~170 ms, and single runs vary by
#                         +-25 ms: with 7 rounds the medians gave x1.12 and x1.09 on the same
#                         code, with 15 x1.03)
#   BENCH_HOSTS=100       hosts in the fleet
#   BENCH_LINES=50000     known_hosts lines of other hosts
#   BENCH_HASHED=0        1: also measure the hashed file
#   BENCH_PROFILE=release build profile (debug: no release build needed; slower, same shape)
#   DEPLOY_BIN=path       measure this deploy binary (e.g. an older build, for before/after)
#   DEPLOY_FLEET_KEEP=1   keep the fleet's directory
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$script_dir/lib/common.sh"

rounds=${BENCH_ROUNDS:-15}
host_count=${BENCH_HOSTS:-100}
lines=${BENCH_LINES:-50000}
profile=${BENCH_PROFILE:-release}
with_hashed=${BENCH_HASHED:-0}
positive_integers BENCH_ROUNDS="$rounds" BENCH_HOSTS="$host_count" BENCH_LINES="$lines"

bench_traps

require_openssh
build_deploy "$profile"
deploy_bin=$DEPLOY_PATH
# One sshd per host, a few descriptors each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_fleet "$host_count"
sed -i "s/^connect_timeout = .*/connect_timeout = \"60s\"/" deploy.toml # a loaded machine is not a dead host
cat >>deploy.toml <<EOF
[deploy]
concurrency = 50

[services.bench]
base_dir = "app"
EOF

log "writing known_hosts files with $lines lines of other hosts"
key=$(awk 'NR == 1 { print $2, $3 }' "$FLEET_KNOWN_HOSTS")
awk -v lines="$lines" -v key="$key" 'BEGIN {
  for (i = 0; i < lines; i++)
    printf "host-%d.bench.example.com %s\n", i, key
}' >others
cp others others.hashed
ssh-keygen -q -H -f others.hashed >/dev/null 2>&1 || die "ssh-keygen -H failed"
rm -f others.hashed.old
cp "$FLEET_KNOWN_HOSTS" known_hosts.small
cat others "$FLEET_KNOWN_HOSTS" >known_hosts.plain
cat others.hashed "$FLEET_KNOWN_HOSTS" >known_hosts.hashed
wc -l known_hosts.small known_hosts.plain known_hosts.hashed >&2

# run_status VARIANT: one `deploy status` with known_hosts.VARIANT; prints user+sys seconds.
run_status() {
  local variant=$1 rc=0 TIMEFORMAT='%3U %3S'
  sed "s|^known_hosts = .*|known_hosts = [\"$FLEET_DIR/known_hosts.$variant\"]|" deploy.toml >"$variant.toml"
  # `time` reports the user and system CPU of the command (env execs deploy) on its stderr.
  { time env -u SSH_AUTH_SOCK -u RUST_LOG NO_COLOR=1 "$deploy_bin" -i "$variant.toml" status \
    --no-progress -q --output json >"$variant.json" 2>"$variant.stderr" || rc=$?; } 2>"$variant.time"
  if [ "$rc" != 0 ]; then
    cat "$variant.stderr" "$variant.json" >&2
    die "deploy status with known_hosts.$variant failed (exit $rc)"
  fi
  awk '{ printf "%.3f\n", $1 + $2 }' "$variant.time"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

small=() plain=() hashed=()
run_status small >/dev/null # warm-up: page cache, sshd start-up
for round in $(seq "$rounds"); do
  small+=("$(run_status small)")
  plain+=("$(run_status plain)")
  if [ "$with_hashed" = 1 ]; then hashed+=("$(run_status hashed)"); else hashed+=(0); fi
  log "round $round: small ${small[-1]} s, plain ${plain[-1]} s, hashed ${hashed[-1]} s"
done

m_small=$(median "${small[@]}")
m_plain=$(median "${plain[@]}")
m_hashed=$(median "${hashed[@]}")
ratio_plain=$(awk -v a="$m_plain" -v b="$m_small" 'BEGIN { printf "%.2f", a / b }')
ratio_hashed=$(awk -v a="$m_hashed" -v b="$m_small" 'BEGIN { printf "%.2f", a / b }')
printf 'deploy status, %s hosts, controller CPU (user+sys), median of %s rounds (%s)\n' "$host_count" "$rounds" "$deploy_bin"
printf '  known_hosts %-28s %8s s\n' "small ($host_count lines)" "$m_small"
printf '  known_hosts %-28s %8s s  x%s  %s (target <= 1.10)\n' "plain (+$lines lines)" "$m_plain" "$ratio_plain" "$(verdict "$ratio_plain <= 1.10")"
if [ "$with_hashed" = 1 ]; then
  printf '  known_hosts %-28s %8s s  x%s  %s (target <= 1.10)\n' "hashed (+$lines lines)" "$m_hashed" "$ratio_hashed" "$(verdict "$ratio_hashed <= 1.10")"
fi
