#!/usr/bin/env bash
# Performance targets of issue 3, measured against a throw-away local fleet of real OpenSSH sshd
# hosts on 127.0.0.1: the integration tests' own fleet, run by examples/testfleet.rs (see
# scripts/lib/common.sh).
#
#   1. Wall time: `deploy push` of a 50 MiB / 2,000-file artifact of incompressible data to 8 hosts
#      vs. a plain OpenSSH pipeline doing the same by hand (8 `ssh ... 'mkdir && tar -xzf - && ln
#      && mv -T' < artifact` in parallel). Target: median deploy / median ssh <= 1.10.
#      BENCH_ROUNDS rounds (default 9: medians of 5 rounds moved by ±0.05 on a loaded 2-core
#      machine), interleaved (the order alternates each round); every round pushes a NEW version
#      with `--full` (the same bytes under a new version would otherwise be a delta push that
#      sends almost nothing: see `--delta` for that), so every round really uploads to every host.
#   2. The controller's CPU seconds per push (from /usr/bin/time -v), next to the ssh clients'.
#   3. The controller's peak RSS for a 20 MiB, a 50 MiB and a 200 MiB artifact (one push each to
#      8 hosts). Target: <= 64 MiB and roughly flat across sizes.
#
# Before every timed run the script calls `sync`, so that no run pays for writing back the
# previous run's extracted files. It prints the figures next to the targets with PASS/MISS, and exits 0 either way (it is a
# measurement, not a test) unless something failed to run. Environment:
#   BENCH_ROUNDS=9   rounds of (deploy push, ssh pipeline)
#   BENCH_HOSTS=8    hosts in the fleet
#   DEPLOY_BIN=path  use this deploy binary instead of `cargo build --release` (the local fleet is
#                    still built: cargo build --release --example testfleet)
#   TMPDIR           where the fleet lives (needs ~3 GiB of disk; avoid a small tmpfs)
#   DEPLOY_FLEET_KEEP=1  keep the temp dir afterwards
#
# Other benchmarks, each its own script (options as environment variables, see each header):
#   scripts/bench.sh --scale        hundreds of hosts: memory and time against fleet size and
#                                   concurrency, plain ssh and pssh (scripts/bench-scale.sh)
#   scripts/bench.sh --bastion      20 hosts behind one bastion against direct (bench-bastion.sh)
#   scripts/bench.sh --delta        delta push against full push, rsync --link-dest and the plain
#                                   OpenSSH pipeline (bench-delta.sh)
#   scripts/bench.sh --known-hosts  status CPU with a 50,000-line known_hosts (bench-known-hosts.sh)
#   scripts/bench.sh --floor        100-host push: CPU split (controller, hosts) of deploy, pssh and
#                                   the least a safe push does on a host (bench-floor.sh)
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd -P)
case "${1:-}" in
  --scale) exec "$script_dir/bench-scale.sh" ;;
  --bastion) exec "$script_dir/bench-bastion.sh" ;;
  --delta) exec "$script_dir/bench-delta.sh" ;;
  --known-hosts) exec "$script_dir/bench-known-hosts.sh" ;;
  --floor) exec "$script_dir/bench-floor.sh" ;;
esac
# shellcheck source=scripts/lib/common.sh
. "$script_dir/lib/common.sh"

rounds=${BENCH_ROUNDS:-9}
host_count=${BENCH_HOSTS:-8}
positive_integers BENCH_ROUNDS="$rounds" BENCH_HOSTS="$host_count"

gen_pids=()
bench_stop_extra() {
  if [ ${#gen_pids[@]} -gt 0 ]; then kill_tree "${gen_pids[@]}"; fi
}
bench_traps

# ---------------------------------------------------------------------------------------------
# Set-up

require_openssh
if [ ! -x /usr/bin/time ]; then
  apt_install "the benchmark measures CPU time and peak RSS with /usr/bin/time -v" time
fi
/usr/bin/time -v true 2>/dev/null || die "/usr/bin/time -v does not work (GNU time needed)"
command -v split >/dev/null 2>&1 || die "split (coreutils) is missing"

build_deploy release
deploy_bin=$DEPLOY_PATH

start_fleet "$host_count"

bench_tables "$host_count" >>deploy.toml

# make_artifact NAME MIB FILES: NAME.tar.gz of FILES files (in 20 directories) of random bytes,
# MIB MiB in all, gzip -1 (random data does not compress, so the upload is the full size).
make_artifact() {
  local name=$1 mib=$2 files=$3 src=$1.src d
  rm -rf "$src"
  mkdir -p "$src"
  head -c "$((mib * 1024 * 1024))" /dev/urandom >"$src/blob"
  (cd "$src" && split -n "$files" -a 4 -d blob f && rm blob)
  # f0000..f1999: 100 per directory d00..d19 (for 2,000 files).
  for d in $(cd "$src" && ls | sed -n 's/^f\(..\).*/\1/p' | sort -u); do
    mkdir "$src/d$d"
    mv "$src"/f"$d"* "$src/d$d/"
  done
  tar -cf - -C "$src" . | gzip -1 >"$name.tar.gz"
  rm -rf "$src"
}

log "generating artifacts of random data (50, 20 and 200 MiB; 2,000 files each)"
t=$(now)
make_artifact a200 200 2000 &
gen_pids=($!)
make_artifact a50 50 2000 &
gen_pids+=($!)
make_artifact a20 20 2000 &
gen_pids+=($!)
for pid in "${gen_pids[@]}"; do wait "$pid" || die "generating the artifacts failed"; done
gen_pids=()
log "  done in $(elapsed "$t" "$(now)") s: $(ls -l a20.tar.gz a50.tar.gz a200.tar.gz | awk '{ printf "%s %s B; ", $NF, $5 }')"

# ---------------------------------------------------------------------------------------------
# Measurements

# run_deploy_push VERSION ARTIFACT LABEL: one timed push; sets wall_s, cpu_s, rss_kib.
run_deploy_push() {
  local version=$1 artifact=$2 label=$3 rc=0 t0 t1 size
  local out=$label.json err=$label.stderr tv=$label.time
  sync # nobody pays for the previous run's dirty pages
  t0=$(now)
  # In the background and waited for, so that a signal reaches the traps at once.
  /usr/bin/time -v -o "$tv" env -u SSH_AUTH_SOCK -u RUST_LOG NO_COLOR=1 "$deploy_bin" \
    -i deploy.toml push --version "$version" --artifact "$artifact" --full \
    --no-progress -q --output json >"$out" 2>"$err" &
  child_pids=($!)
  wait "${child_pids[0]}" || rc=$?
  child_pids=()
  t1=$(now)
  if [ "$rc" != 0 ]; then
    log "deploy push $version failed (exit $rc):"
    cat "$err" "$out" >&2
    exit 1
  fi
  # Every host must have really uploaded the artifact (a new version each time).
  size=$(stat -c %s "$artifact")
  local uploaded
  uploaded=$(grep -o '"bytes": *[0-9]*' "$out" | grep -o '[0-9]*$' | awk -v s="$size" '$1 >= s { n++ } END { print n + 0 }')
  if [ "$uploaded" != "$host_count" ]; then
    log "deploy push $version: only $uploaded of $host_count hosts report uploading >= $size bytes:"
    cat "$out" >&2
    exit 1
  fi
  wall_s=$(elapsed "$t0" "$t1")
  cpu_s=$(awk -F': ' '/User time \(seconds\)/ { u = $2 } /System time \(seconds\)/ { s = $2 } END { printf "%.2f", u + s }' "$tv")
  rss_kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tv")
}

# The plain OpenSSH baseline: one script that starts the 8 pipelines in the background and waits.
cat >ssh_round.sh <<'EOF'
#!/usr/bin/env bash
# ssh_round.sh ARTIFACT RELEASE KEY KNOWN_HOSTS USER PORT...
artifact=$1 release=$2 key=$3 known=$4 user=$5
shift 5
pids=()
for port in "$@"; do
  ssh -F /dev/null -i "$key" -o IdentitiesOnly=yes -o UserKnownHostsFile="$known" \
    -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes \
    -o LogLevel=ERROR -p "$port" "$user@127.0.0.1" \
    "mkdir -p plain/releases/$release && tar -xzf - -C plain/releases/$release && ln -s releases/$release plain/current.tmp && mv -T plain/current.tmp plain/current" \
    <"$artifact" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
[ "$failed" = 0 ] || { echo "$failed ssh pipelines failed" >&2; exit 1; }
EOF
chmod +x ssh_round.sh

# run_ssh_round RELEASE ARTIFACT: sets wall_s and cpu_s (all ssh clients together).
run_ssh_round() {
  local release=$1 artifact=$2 rc=0 t0 t1
  sync # nobody pays for the previous run's dirty pages
  t0=$(now)
  env -u SSH_AUTH_SOCK /usr/bin/time -v -o ssh.time ./ssh_round.sh "$artifact" "$release" \
    "$FLEET_CLIENT_KEY" "$FLEET_KNOWN_HOSTS" "$FLEET_USER" "${FLEET_PORTS[@]}" 2>ssh.stderr &
  child_pids=($!)
  wait "${child_pids[0]}" || rc=$?
  child_pids=()
  t1=$(now)
  if [ "$rc" != 0 ]; then
    log "the plain ssh pipeline failed (exit $rc):"
    cat ssh.stderr >&2
    exit 1
  fi
  wall_s=$(elapsed "$t0" "$t1")
  cpu_s=$(awk -F': ' '/User time \(seconds\)/ { u = $2 } /System time \(seconds\)/ { s = $2 } END { printf "%.2f", u + s }' ssh.time)
}

# Keeps the plain pipeline's last 2 releases per host too (outside the timed part).
prune_plain() {
  local keep_from=$(($1 - 1)) root dir n
  for root in "${FLEET_ROOTS[@]}"; do
    for dir in "$root"/plain/releases/r*; do
      [ -d "$dir" ] || continue
      n=${dir##*/r}
      [ "$n" -ge "$keep_from" ] || rm -rf -- "$dir"
    done
  done
}

# Connections warm (and host keys checked) before anything is timed.
env -u SSH_AUTH_SOCK NO_COLOR=1 "$deploy_bin" -i deploy.toml check --no-progress -q >/dev/null \
  || die "deploy check failed against the fresh fleet"

load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
deploy_walls=() ssh_walls=() deploy_cpus=() ssh_cpus=() rss50=()
log ""
log "round  first   deploy wall  deploy cpu  deploy rss   ssh wall  ssh cpu"
for ((round = 1; round <= rounds; round++)); do
  if [ $((round % 2)) = 1 ]; then order=deploy; else order=ssh; fi
  for which in $order $([ $order = deploy ] && echo ssh || echo deploy); do
    if [ "$which" = deploy ]; then
      run_deploy_push "r$round" a50.tar.gz "round$round"
      d_wall=$wall_s d_cpu=$cpu_s d_rss=$rss_kib
    else
      run_ssh_round "r$round" a50.tar.gz
      s_wall=$wall_s s_cpu=$cpu_s
    fi
  done
  deploy_walls+=("$d_wall") ssh_walls+=("$s_wall") deploy_cpus+=("$d_cpu") ssh_cpus+=("$s_cpu") rss50+=("$d_rss")
  prune_plain "$round"
  log "$(printf '%5d  %-6s  %10.3fs  %9.2fs  %7.1f MiB  %8.3fs  %6.2fs' "$round" "$order" \
    "$d_wall" "$d_cpu" "$(awk -v k="$d_rss" 'BEGIN { print k / 1024 }')" "$s_wall" "$s_cpu")"
done
rm -rf -- "${FLEET_ROOTS[@]/%//plain}"

log ""
log "peak RSS runs: 20 MiB and 200 MiB artifacts, one push each to $host_count hosts"
run_deploy_push rss20 a20.tar.gz rss20
rss20=$rss_kib wall20=$wall_s
log "  20 MiB: $(awk -v k="$rss20" 'BEGIN { printf "%.1f", k / 1024 }') MiB peak RSS, ${wall20}s"
run_deploy_push rss200 a200.tar.gz rss200
rss200=$rss_kib wall200=$wall_s
log "  200 MiB: $(awk -v k="$rss200" 'BEGIN { printf "%.1f", k / 1024 }') MiB peak RSS, ${wall200}s"

# ---------------------------------------------------------------------------------------------
# Report

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
max() { printf '%s\n' "$@" | sort -g | tail -n 1; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

med_deploy=$(median "${deploy_walls[@]}")
med_ssh=$(median "${ssh_walls[@]}")
ratio=$(awk -v d="$med_deploy" -v s="$med_ssh" 'BEGIN { printf "%.3f", d / s }')
med_dcpu=$(median "${deploy_cpus[@]}")
med_scpu=$(median "${ssh_cpus[@]}")
rss50_max=$(max "${rss50[@]}")
rss_min=$(printf '%s\n' "$rss20" "$rss50_max" "$rss200" | sort -g | head -n 1)
rss_max=$(printf '%s\n' "$rss20" "$rss50_max" "$rss200" | sort -g | tail -n 1)
spread_mib=$(awk -v a="$rss_min" -v b="$rss_max" 'BEGIN { printf "%.1f", (b - a) / 1024 }')
a50_mib=$(awk -v b="$(stat -c %s a50.tar.gz)" 'BEGIN { printf "%.1f", b / 1048576 }')

printf '\n'
printf 'deploy benchmark: %s hosts on 127.0.0.1, %s rounds, artifact %s MiB / 2000 files (incompressible), %s CPUs\n' \
  "$host_count" "$rounds" "$a50_mib" "$(nproc 2>/dev/null || echo '?')"
printf '%-40s %14s   %-22s %s\n' "metric" "figure" "target" "verdict"
printf '%-40s %14s   %-22s %s\n' "median wall, deploy push" "${med_deploy}s" "" ""
printf '%-40s %14s   %-22s %s\n' "median wall, plain ssh pipelines" "${med_ssh}s" "" ""
printf '%-40s %14s   %-22s %s\n' "ratio deploy / ssh" "$ratio" "<= 1.10" "$(verdict "$ratio <= 1.10")"
printf '%-40s %14s   %-22s %s\n' "deploy CPU per push (median, user+sys)" "${med_dcpu}s" "(ssh clients: ${med_scpu}s)" ""
printf '%-40s %14s   %-22s %s\n' "deploy peak RSS, 20 MiB artifact" "$(mib "$rss20") MiB" "<= 64 MiB" "$(verdict "$rss20 <= 65536")"
printf '%-40s %14s   %-22s %s\n' "deploy peak RSS, 50 MiB artifact (max)" "$(mib "$rss50_max") MiB" "<= 64 MiB" "$(verdict "$rss50_max <= 65536")"
printf '%-40s %14s   %-22s %s\n' "deploy peak RSS, 200 MiB artifact" "$(mib "$rss200") MiB" "<= 64 MiB" "$(verdict "$rss200 <= 65536")"
printf '%-40s %14s   %-22s %s\n' "RSS spread across sizes (max - min)" "$spread_mib MiB" "flat: <= 8 MiB" "$(verdict "$spread_mib <= 8")"
printf '\nper round (s): deploy %s | ssh %s\n' "${deploy_walls[*]}" "${ssh_walls[*]}"
if [ "$rounds" -ge 3 ]; then
  printf 'note: from round 3 on, deploy also prunes the oldest release on every host (keep_releases = 2) before it\n'
  printf '      exits; the plain pipeline deletes nothing inside its timing (its old dirs are removed between rounds)\n'
fi
printf 'load average (1/5/15 min) at the start of the rounds: %s; at the end: %s (other load on the machine skews the figures)\n' \
  "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
