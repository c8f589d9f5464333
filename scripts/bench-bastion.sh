#!/usr/bin/env bash
# Issue 13's performance targets for jump hosts, against a throw-away local fleet of real OpenSSH
# sshd hosts on 127.0.0.1 (the integration tests' fleet, see scripts/lib/common.sh) plus one
# bastion sshd in its own mount namespace, whose private /etc/hosts maps internal-h1..N to
# 127.0.0.1 (names the controller cannot resolve: the pushes through it really use the jump).
#
# In the same run, interleaved (the order alternates each round), every round pushing a NEW
# version (so every host really uploads) of a BENCH_MIB MiB artifact to BENCH_HOSTS hosts:
#   direct:  the fleet's own inventory (127.0.0.1:PORT per host)
#   bastion: the same hosts as internal-hN behind `proxy_jump` (one bastion)
# Reported: median wall time of each and their ratio (target <= 1.3), the bastion logins per
# push run (target 1: every host's connection is a channel of one bastion connection), and the
# controller's peak RSS through the bastion (target <= 64 MiB), from /usr/bin/time -v.
# A measurement, not a test: exits 0 with PASS/MISS next to each figure unless something failed.
# Needs root (unshare --mount, mount --bind for the bastion's /etc/hosts). Environment:
#   BENCH_ROUNDS=5  BENCH_HOSTS=20  BENCH_MIB=4
#   BENCH_PROFILE=release   (or debug: no release build of the dependencies needed)
#   DEPLOY_BIN=path         use this deploy binary (the test fleet is still built)
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$script_dir/lib/common.sh"

rounds=${BENCH_ROUNDS:-5}
host_count=${BENCH_HOSTS:-20}
mib=${BENCH_MIB:-4}
profile=${BENCH_PROFILE:-release}
positive_integers BENCH_ROUNDS="$rounds" BENCH_HOSTS="$host_count" BENCH_MIB="$mib"
[ "$(id -u)" = 0 ] || die "the bastion needs root (unshare --mount, mount --bind over /etc/hosts)"
command -v unshare >/dev/null 2>&1 || die "unshare (util-linux) is missing"

bastion_pid=""
bench_stop_extra() {
  if [ -n "$bastion_pid" ]; then kill_tree "$bastion_pid"; fi
}
bench_traps
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

require_openssh
if [ ! -x /usr/bin/time ]; then
  apt_install "the benchmark measures peak RSS with /usr/bin/time -v" time
fi
build_deploy "$profile"
deploy_bin=$DEPLOY_PATH

start_fleet "$host_count"

# ---------------------------------------------------------------------------------------------
# The bastion: its own host key, the fleet's client key authorized, internal-hN in its /etc/hosts.
mkdir -p bastion
ssh-keygen -q -t ed25519 -N '' -f bastion/host_key -C bench-bastion
cp "$FLEET_CLIENT_KEY.pub" bastion/authorized_keys
{
  echo "127.0.0.1 localhost"
  for i in $(seq 1 "$host_count"); do echo "127.0.0.1 internal-h$i"; done
} >bastion/hosts
bastion_port=""
for _ in 1 2 3; do
  bastion_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1)
  cat >bastion/sshd_config <<EOF
Port $bastion_port
ListenAddress 127.0.0.1
HostKey $FLEET_DIR/bastion/host_key
PidFile $FLEET_DIR/bastion/sshd.pid
AuthorizedKeysFile $FLEET_DIR/bastion/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxSessions 1000
MaxStartups 100:30:200
LogLevel VERBOSE
EOF
  unshare --mount --propagation private sh -c \
    "mount --bind '$FLEET_DIR/bastion/hosts' /etc/hosts && exec /usr/sbin/sshd -D -e -f '$FLEET_DIR/bastion/sshd_config'" \
    2>>bastion/sshd.log &
  bastion_pid=$!
  for _ in $(seq 1 100); do
    if grep -q "Server listening" bastion/sshd.log 2>/dev/null; then break; fi
    kill -0 "$bastion_pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$bastion_pid" 2>/dev/null && grep -q "Server listening" bastion/sshd.log; then break; fi
  bastion_pid=""
done
[ -n "$bastion_pid" ] || die "the bastion sshd did not start: $(cat bastion/sshd.log)"
if getent hosts internal-h1 >/dev/null 2>&1; then
  die "this machine resolves internal-h1: the bastion runs would not prove the jump"
fi

# ---------------------------------------------------------------------------------------------
# Inventories: the fleet's (direct), and the same hosts behind the bastion.
service() { bench_tables "$host_count" "$1"; }
cp deploy.toml direct.toml
service direct >>direct.toml
{
  awk -v port="$bastion_port" '{ print "[127.0.0.1]:" port, $1, $2 }' bastion/host_key.pub
  for i in $(seq 1 "$host_count"); do
    echo "[internal-h$i]:${FLEET_PORTS[$((i - 1))]} $(grep "^\\[127.0.0.1\\]:${FLEET_PORTS[$((i - 1))]} " "$FLEET_KNOWN_HOSTS" | cut -d' ' -f2-)"
  done
} >bastion_known_hosts
{
  cat <<EOF
[ssh]
config = false
user = "$FLEET_USER"
identity_files = ["$FLEET_CLIENT_KEY"]
known_hosts = ["$FLEET_DIR/bastion_known_hosts"]
connect_timeout = "10s"
proxy_jump = "$FLEET_USER@127.0.0.1:$bastion_port"

EOF
  for i in $(seq 1 "$host_count"); do
    printf '[[hosts]]\nname = "%s"\naddress = "internal-h%s"\nport = %s\n\n' \
      "${FLEET_NAMES[$((i - 1))]}" "$i" "${FLEET_PORTS[$((i - 1))]}"
  done
  service jumped
} >bastion.toml

log "generating a $mib MiB artifact of random data"
mkdir -p payload
head -c "$((mib * 1024 * 1024))" /dev/urandom >payload/blob.bin
tar -czf artifact.tar.gz -C payload .

# run_push INVENTORY VERSION LABEL: one timed push; sets wall_s and rss_kib.
run_push() {
  local inventory=$1 version=$2 label=$3 rc=0 t0 t1
  sync
  t0=$(now)
  /usr/bin/time -v -o "$label.time" env -u SSH_AUTH_SOCK -u RUST_LOG NO_COLOR=1 "$deploy_bin" \
    -i "$inventory" push --version "$version" --artifact artifact.tar.gz \
    --no-progress -q --output json >"$label.json" 2>"$label.stderr" &
  child_pids=($!)
  wait "${child_pids[0]}" || rc=$?
  child_pids=()
  t1=$(now)
  if [ "$rc" != 0 ]; then
    log "push $version with $inventory failed (exit $rc):"
    cat "$label.stderr" "$label.json" >&2
    exit 1
  fi
  wall_s=$(elapsed "$t0" "$t1")
  rss_kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$label.time")
}

logins() { grep -c "Accepted publickey for" bastion/sshd.log || true; }

: >direct.walls
: >bastion.walls
: >bastion.rss
: >bastion.logins
for round in $(seq 1 "$rounds"); do
  for kind in $( [ $((round % 2)) = 1 ] && echo "direct bastion" || echo "bastion direct"); do
    before=$(logins)
    run_push "$kind.toml" "r$round" "$kind-$round"
    echo "$wall_s" >>"$kind.walls"
    if [ "$kind" = bastion ]; then
      echo "$rss_kib" >>bastion.rss
      echo $(($(logins) - before)) >>bastion.logins
    fi
    log "round $round $kind: ${wall_s} s, peak RSS $((rss_kib / 1024)) MiB"
  done
done

med_direct=$(median <direct.walls)
med_bastion=$(median <bastion.walls)
ratio=$(awk -v b="$med_bastion" -v d="$med_direct" 'BEGIN { printf "%.3f", b / d }')
max_logins=$(sort -n bastion.logins | tail -1)
min_logins=$(sort -n bastion.logins | head -1)
peak_mib=$(sort -n bastion.rss | tail -1 | awk '{ printf "%.1f", $1 / 1024 }')
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

echo
echo "push of a $mib MiB artifact to $host_count hosts, $rounds rounds each, interleaved ($profile build)"
printf '%-44s %12s   %-10s %s\n' "figure" "value" "target" "verdict"
printf '%-44s %12s\n' "median wall, direct (s)" "$med_direct"
printf '%-44s %12s\n' "median wall, through the bastion (s)" "$med_bastion"
printf '%-44s %12s   %-10s %s\n' "ratio bastion / direct" "$ratio" "<= 1.3" "$(verdict "$ratio <= 1.3")"
printf '%-44s %12s   %-10s %s\n' "bastion logins per push (min..max)" "$min_logins..$max_logins" "1" "$(verdict "$min_logins == 1 && $max_logins == 1")"
printf '%-44s %12s   %-10s %s\n' "controller peak RSS through the bastion (MiB)" "$peak_mib" "<= 64" "$(verdict "$peak_mib <= 64")"
