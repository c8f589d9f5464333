#!/usr/bin/env bash
# `scripts/bench.sh --scale`: issue 17's fleet-scale figures, against a local fleet of real
# OpenSSH sshd hosts on 127.0.0.1 (one sshd per host, the integration tests' own fleet, run by
# examples/testfleet.rs; see scripts/lib/common.sh).
#
# For each fleet size in SCALE_SIZES (default "100 200 500"; the fleet is started once, at the
# largest size, and each size is an inventory of its first N hosts), interleaved in one run:
#   - `deploy status` and `deploy check` (-j 50), and a plain `ssh` loop reading each host's
#     live release (xargs -P 50);
#   - a 1 MB `deploy push` (a new version each time, so every host uploads) at -j 10, 50 and 100,
#     against the same upload by a plain `ssh` loop bounded by `xargs -P J`, and by pssh
#     (parallel-ssh -p J -I) when it is installed (the script tries `apt-get install pssh`).
# Wall time and peak RSS (GNU time -v) of every run, then the targets:
#   push peak RSS <= 64 MiB at -j 10 and <= 96 MiB at -j 100 for the largest size (flat in N);
#   status and push (-j 50) at the largest size <= 5.5x their time at 100 hosts;
#   push to 100 hosts (-j 50) >= 3x faster than pssh (-j 50).
# It is a measurement: it exits 0 whatever the figures, unless something failed to run.
# Environment: SCALE_SIZES, DEPLOY_BIN (use this deploy binary), BENCH_PROFILE=debug (a debug build,
# to try the script itself), TMPDIR, DEPLOY_FLEET_KEEP=1.
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$script_dir/lib/common.sh"

sizes=${SCALE_SIZES:-100 200 500}
for size in $sizes; do positive_integers SCALE_SIZES="$size"; done
# shellcheck disable=SC2086 # a list of words
largest=$(printf '%s\n' $sizes | sort -n | tail -n 1)
# shellcheck disable=SC2086
smallest=$(printf '%s\n' $sizes | sort -n | head -n 1)
jobs_list="10 50 100"

bench_traps
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Each host is a connection (and the fleet itself one sshd per host): use all the fds we may.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open-file limit: $(ulimit -n)"

require_openssh
if [ ! -x /usr/bin/time ]; then
  apt_install "the benchmark measures peak RSS with /usr/bin/time -v" time
fi
pssh_bin=$(find_pssh)
[ -n "$pssh_bin" ] || log "pssh is not installed and could not be installed: no pssh column"

build_deploy "${BENCH_PROFILE:-release}"
deploy_bin=$DEPLOY_PATH

log "starting a local fleet of $largest sshd hosts on 127.0.0.1"
t=$(now)
fleet_up "$largest"
log "  up in $(elapsed "$t" "$(now)" 2) s: $FLEET_DIR"
cd "$FLEET_DIR"

# inventory_of N: the fleet's [ssh] table and its first N hosts, then the benchmark's tables.
inventory_of() {
  # connect_timeout 60s: hundreds of handshakes on a loaded 2-core machine (the fleet's sshd
  # processes share the controller's CPUs) must not turn into failures.
  awk -v n="$1" '/^\[\[hosts\]\]/ { count++ } count <= n { print }' deploy.toml |
    sed 's/^connect_timeout = .*/connect_timeout = "60s"/' >"hosts$1.toml"
  printf '\n' >>"hosts$1.toml"
  bench_tables 10 >>"hosts$1.toml"
  printf '%s\n' "${FLEET_PORTS[@]:0:$1}" >"ports$1"
  sed "s/^/$FLEET_USER@127.0.0.1:/" "ports$1" >"pssh$1"
}
for size in $sizes; do inventory_of "$size"; done

# artifact_for ROUND: a1mb-ROUND.tar.gz, 1 MB of new random bytes. Every round ships new content,
# so a push really uploads the whole artifact to every host, as pssh and the ssh loop do (the same
# bytes again would be a delta push that sends almost nothing, see README "Delta push").
artifact_for() {
  mkdir -p src
  head -c 1000000 /dev/urandom >src/blob
  tar -czf "a1mb-$1.tar.gz" -C src .
  rm -rf src
}

results=results.tsv
: >"$results"
# record KIND N J WALL RSS_KIB
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; log "$(printf '%-12s %4s hosts  -j %-3s  %7ss  %7s MiB' "$1" "$2" "$3" "$4" "$(mib "$5")")"; }

# timed KIND N J COMMAND...: runs it under GNU time, records wall and peak RSS.
timed() {
  local kind=$1 n=$2 j=$3 rc=0 t0 t1
  shift 3
  sync
  t0=$(now)
  # The helpers are shell functions: a bash child runs them (GNU time reports the largest
  # process's peak RSS, deploy's or an ssh client's, not the shell's).
  /usr/bin/time -v -o run.time bash -c "$(declare -p ssh_options deploy_bin pssh_bin FLEET_USER)
$(declare -f deploy_run ssh_loop pssh_push)
\"\$@\"" timed "$@" >run.out 2>run.err &
  child_pids=($!)
  wait "${child_pids[0]}" || rc=$?
  child_pids=()
  t1=$(now)
  if [ "$rc" != 0 ]; then
    log "$kind ($n hosts, -j $j) failed (exit $rc):"
    tail -n 20 run.err run.out >&2
    exit 1
  fi
  record "$kind" "$n" "$j" "$(elapsed "$t0" "$t1" 2)" \
    "$(awk -F': ' '/Maximum resident set size/ { print $2 }' run.time)"
}

ssh_options=("${FLEET_SSH_OPTIONS[@]}")
# The plain OpenSSH loops, one ssh per host, at most J at once (xargs -P J).
cat >ssh_one.sh <<'EOF'
#!/usr/bin/env bash
# ssh_one.sh MODE PORT RELEASE ARTIFACT -- SSH OPTIONS...
mode=$1 port=$2 release=$3 artifact=$4
shift 5
if [ "$mode" = push ]; then
  exec ssh "$@" -p "$port" "$FLEET_USER@127.0.0.1" \
    "mkdir -p plain/releases/$release && tar -xzf - -C plain/releases/$release && ln -sfn releases/$release plain/current.tmp && mv -T plain/current.tmp plain/current" <"$artifact"
else
  exec ssh "$@" -p "$port" "$FLEET_USER@127.0.0.1" "readlink app/current || true" </dev/null
fi
EOF
chmod +x ssh_one.sh
export FLEET_USER
ssh_loop() { # MODE N J RELEASE (the artifact: a1mb-RELEASE.tar.gz)
  xargs -P "$3" -I{} ./ssh_one.sh "$1" {} "$4" "a1mb-$4.tar.gz" -- "${ssh_options[@]}" <"ports$2"
}
pssh_push() { # N J RELEASE
  "$pssh_bin" -h "pssh$1" -p "$2" -t 0 -I -x "${ssh_options[*]}" \
    "mkdir -p pssh/releases/$3 && tar -xzf - -C pssh/releases/$3" <"a1mb-$3.tar.gz" >/dev/null
}

deploy_run() { env -u SSH_AUTH_SOCK -u RUST_LOG NO_COLOR=1 "$deploy_bin" "$@"; }

# uploaded_everywhere N ARTIFACT: the last push (run.out) sent the whole artifact to all N hosts.
uploaded_everywhere() {
  local size uploaded
  size=$(stat -c %s "$2")
  uploaded=$(grep -o '"bytes": *[0-9]*' run.out | grep -o '[0-9]*$' | awk -v s="$size" '$1 >= s { n++ } END { print n + 0 }')
  [ "$uploaded" = "$1" ] || die "only $uploaded of $1 hosts report uploading >= $size bytes of $2"
}

# Host keys checked and connections warm before anything is timed.
deploy_run -i "hosts$largest.toml" check -q --no-progress -j 50 >/dev/null || die "deploy check failed on the fresh fleet"

round=0
for size in $sizes; do
  log ""
  log "== $size hosts"
  timed status "$size" 50 deploy_run -i "hosts$size.toml" -j 50 status --no-progress -q
  timed ssh-status "$size" 50 ssh_loop status "$size" 50 none
  timed check "$size" 50 deploy_run -i "hosts$size.toml" -j 50 check --no-progress -q
  for j in $jobs_list; do
    round=$((round + 1))
    artifact_for "r$round"
    # Interleaved: the order of the three pushes turns each round.
    for which in $(case $((round % 3)) in 0) echo "deploy ssh pssh" ;; 1) echo "ssh pssh deploy" ;; *) echo "pssh deploy ssh" ;; esac); do
      case $which in
        deploy)
          timed push "$size" "$j" deploy_run -i "hosts$size.toml" -j "$j" push --version "r$round" \
            --artifact "a1mb-r$round.tar.gz" --no-progress -q --output json
          uploaded_everywhere "$size" "a1mb-r$round.tar.gz"
          ;;
        ssh) timed ssh-push "$size" "$j" ssh_loop push "$size" "$j" "r$round" ;;
        pssh) [ -z "$pssh_bin" ] || timed pssh-push "$size" "$j" pssh_push "$size" "$j" "r$round" ;;
      esac
    done
  done
done

# ---------------------------------------------------------------------------------------------
# Report

figure() { awk -F'\t' -v k="$1" -v n="$2" -v j="$3" -v c="$4" '$1 == k && $2 == n && $3 == j { print $c; exit }' "$results"; }
verdict() { if [ -n "$2" ] && awk "BEGIN { exit !($1) }"; then echo PASS; elif [ -z "$2" ]; then echo "n/a"; else echo MISS; fi; }

printf '\ndeploy --scale benchmark: real sshd hosts on 127.0.0.1, 1 MB artifact, %s CPUs, load at the end: %s\n' \
  "$(nproc 2>/dev/null || echo '?')" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
printf '%-11s %6s %5s %9s %10s\n' run hosts '-j' 'wall s' 'peak MiB'
while IFS=$'\t' read -r kind n j wall rss; do
  printf '%-11s %6s %5s %9s %10s\n' "$kind" "$n" "$j" "$wall" "$(mib "$rss")"
done <"$results"

rss10=$(figure push "$largest" 10 5)
rss100=$(figure push "$largest" 100 5)
status_small=$(figure status "$smallest" 50 4)
status_large=$(figure status "$largest" 50 4)
push_small=$(figure push "$smallest" 50 4)
push_large=$(figure push "$largest" 50 4)
pssh_small=$(figure pssh-push "$smallest" 50 4)
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
status_ratio=$(ratio "$status_large" "$status_small" || true)
push_ratio=$(ratio "$push_large" "$push_small" || true)
pssh_ratio=$(ratio "$pssh_small" "$push_small" || true)
printf '\n%-52s %12s   %-10s %s\n' target figure wanted verdict
printf '%-52s %12s   %-10s %s\n' "push peak RSS, $largest hosts, -j 10" "$(mib "${rss10:-0}") MiB" "<= 64 MiB" "$(verdict "${rss10:-0} <= 65536" "$rss10")"
printf '%-52s %12s   %-10s %s\n' "push peak RSS, $largest hosts, -j 100" "$(mib "${rss100:-0}") MiB" "<= 96 MiB" "$(verdict "${rss100:-0} <= 98304" "$rss100")"
printf '%-52s %12s   %-10s %s\n' "status time, $largest / $smallest hosts" "${status_ratio:-n/a}" "<= 5.5" "$(verdict "${status_ratio:-0} <= 5.5" "$status_ratio")"
printf '%-52s %12s   %-10s %s\n' "push time (-j 50), $largest / $smallest hosts" "${push_ratio:-n/a}" "<= 5.5" "$(verdict "${push_ratio:-0} <= 5.5" "$push_ratio")"
printf '%-52s %12s   %-10s %s\n' "pssh / deploy push time, $smallest hosts, -j 50" "${pssh_ratio:-n/a}" ">= 3" "$(verdict "${pssh_ratio:-0} >= 3" "$pssh_ratio")"
