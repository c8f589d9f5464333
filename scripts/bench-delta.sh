#!/usr/bin/env bash
# Delta push benchmark (issue 14), against a throw-away local fleet of real OpenSSH sshd hosts on
# 127.0.0.1 (the integration tests' fleet, run by examples/testfleet.rs; see scripts/lib/common.sh).
#
# A release of BENCH_MIB MiB in BENCH_FILES files of random bytes (v1), then v2..v7, each with 1%
# of the files rewritten. All figures come from the same run, on the same hosts:
#
#   1. delta push wall: v1 live, push v2 (delta = "hardlink", the default)
#      vs full push wall: v1 live, push v2 --full (another service on the same hosts)
#      target: delta <= 0.25 x full
#   2. delta push wall vs `rsync -a --link-dest=../v1` over OpenSSH of the unpacked v2 tree into
#      each host's rsync/releases/v2 (8 in parallel, the same way as deploy), then a `mv -T` of a
#      `current` link, the best a user would otherwise reach for. target: delta <= 0.5 x rsync
#   3. bytes on the wire: the delta's reported `bytes` (what went into the SSH channels, summed
#      over the hosts) vs the full push's. target: <= 3%
#   4. host disk for five releases (v1..v5 by delta pushes): `du -s releases` (shared files
#      counted once) vs `du -s releases/v5`. target: <= 1.2 x
#   5. controller peak RSS during the delta push (/usr/bin/time -v). target: <= 64 MiB
#   6. an unchanged re-push: 0 bytes on every host
#   7. full push vs the plain OpenSSH pipeline (8 `ssh host 'tar -xzf -' < artifact`), same
#      artifact. target: <= 1.10 x
#   8. the steady state where every push prunes: v6 (which prunes v1, whose files the live v5
#      shares), then the timed delta push of v7; its wall and how many of the files it reuses
#      the live release's identity record still vouched for (the rest were hashed on the hosts),
#      against the delta push of v2 (figures only, no target)
#   9. the floor of a delta push here (no target; it says what target 2 can be): the artifact
#      check `deploy push` makes before any host is contacted (SPEC §4 step 1: a `deploy push
#      --dry-run` of v2 against a closed port, which checks the artifact and is then refused),
#      then the least that SPEC §4 steps 2-3 and the issue's verification leave to do, over one
#      OpenSSH connection per host (curve25519, the cheapest key exchange both ends offer; a
#      ControlMaster, so the switch is a second session, not a second handshake): in parallel
#      on every host, one session takes the lock (`mkdir`), links the whole of v1 (`cp -al`),
#      extracts the changed files over it (GNU tar replaces a linked file, never writes
#      through it) while hashing the stream, and renames the tree into place; it lists v1's
#      files before linking and the staged tree after (without the first, a base file edited
#      on the host could not be told from one the link touched, so reused files would have to
#      be hashed); once every host has staged, one session each switches `current`, appends a
#      history line and unlocks. No records kept, no repair round, nothing parsed on the
#      controller, no process a push does not need.
#
# Each timed run is preceded by `sync`. One round (BENCH_ROUNDS=N repeats the whole sequence with
# new version names and reports medians). It prints the figures with PASS/MISS and exits 0 unless
# something failed to run. Environment:
#   BENCH_MIB=200  BENCH_FILES=5000  BENCH_HOSTS=8  BENCH_ROUNDS=1
#   DEPLOY_BIN=path   use this deploy binary instead of `cargo build --release`
#   BENCH_PROFILE=debug  build and use debug binaries (no release build needed; the SSH crypto is
#                     then unoptimised, so the comparisons with OpenSSH and rsync mean little)
#   TMPDIR            where the fleet lives (needs about (hosts x 3 + 4) x BENCH_MIB of disk)
#   DEPLOY_FLEET_KEEP=1  keep the fleet's directory afterwards
set -euo pipefail

script_dir=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$script_dir/lib/common.sh"

mib=${BENCH_MIB:-200}
files=${BENCH_FILES:-5000}
host_count=${BENCH_HOSTS:-8}
rounds=${BENCH_ROUNDS:-1}
positive_integers BENCH_MIB="$mib" BENCH_FILES="$files" BENCH_HOSTS="$host_count" BENCH_ROUNDS="$rounds"

bench_traps
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

# ---------------------------------------------------------------------------------------------
# Set-up

require_openssh
if [ ! -x /usr/bin/time ]; then
  apt_install "the benchmark measures peak RSS with /usr/bin/time -v" time
fi
rsync_available=1
if ! command -v rsync >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_install "the rsync --link-dest comparison" rsync
  else
    rsync_available=0
    log "rsync is not installed and cannot be installed here: the rsync comparison is skipped"
  fi
fi

profile=${BENCH_PROFILE:-release}
case $profile in release | debug) ;; *) die "BENCH_PROFILE must be release or debug" ;; esac
build_deploy "$profile"
deploy_bin=$DEPLOY_PATH

start_fleet "$host_count"

cat >>deploy.toml <<EOF
[deploy]
concurrency = $host_count
host_timeout = "20m"

[services.delta]
base_dir = "delta"
keep_releases = 5

[services.full]
base_dir = "full"
keep_releases = 2
EOF

# v1: BENCH_MIB MiB of random bytes in BENCH_FILES files, 100 per directory.
log "generating v1: $mib MiB in $files files"
mkdir -p trees/v1
head -c "$((mib * 1024 * 1024))" /dev/urandom >trees/blob
(cd trees/v1 && split -n "$files" -a 5 -d ../blob f)
rm trees/blob
(
  cd trees/v1
  for file in f*; do
    number=${file#f}
    directory=d$((10#$number / 100))
    mkdir -p "$directory"
    mv "$file" "$directory/"
  done
)
file_list=$(cd trees/v1 && find . -type f | sort)
changed_count=$((files / 100))
[ "$changed_count" -gt 0 ] || changed_count=1
file_size=$(((mib * 1024 * 1024) / files))

# vN+1: a hard-linked copy of vN (cp -al, cheap) with 1% of the files replaced by new ones.
next_tree() {
  local from=$1 to=$2 seed=$3
  cp -al "trees/$from" "trees/$to"
  printf '%s\n' "$file_list" | awk -v seed="$seed" -v n="$changed_count" 'BEGIN { srand(seed) } { line[NR] = $0 } END { for (i = 0; i < n; i++) print line[int(rand() * NR) + 1] }' \
    | sort -u | while IFS= read -r path; do
      rm -f "trees/$to/$path"
      head -c "$file_size" /dev/urandom >"trees/$to/$path"
    done
}
for version in 2 3 4 5 6 7; do next_tree "v$((version - 1))" "v$version" "$version"; done
for version in 1 2 3 4 5 6 7; do
  tar -cf - -C "trees/v$version" . | gzip -1 >"v$version.tar.gz"
done
log "artifacts: $(ls -l v*.tar.gz | awk '{ printf "%s %s B; ", $NF, $5 }')"

# The floor (9). The check alone: an inventory of one host on a closed port.
{
  sed -n '1,/^$/p' deploy.toml
  printf '[[hosts]]\nname = "closed"\naddress = "127.0.0.1"\nport = 1\n\n[services.delta]\nbase_dir = "delta"\n'
} >check-only.toml
# The delta floor's stream: the files of v2 that are not v1's (another inode: next_tree
# replaced them), uncompressed like deploy's own delta stream of incompressible files.
comm -13 <(cd trees/v1 && find . -type f -printf '%i %P\n' | sort) <(cd trees/v2 && find . -type f -printf '%i %P\n' | sort) \
  | cut -d' ' -f2- >floor-v2.list
tar -cf floor-v2.tar -C trees/v2 -T floor-v2.list
# The floor's host programs, run in the service's directory: staging ($1 the new release, $2 the
# base release), then the switch ($1 the new release). The listings are in deploy's identity
# format (remote::delta::IDENTITY_FORMAT).
cat >floor-delta.sh <<'EOF'
set -e
mkdir lock
s=staging.$1
rm -rf "$s"
mkdir -p "$s"
find "releases/$2" -type f -printf '%y %m %s %D %i %T@ %C@\0%P\0%l\0'
cp -al "releases/$2" "$s/tree"
{ tee /dev/fd/3 | tar -xf - -C "$s/tree" >&2; } 3>&1 | openssl dgst -sha256 -r
find "$s/tree" -printf '%y %m %s %D %i %T@ %C@\0%P\0%l\0'
mv -T "$s/tree" "releases/$1"
rmdir "$s"
EOF
cat >floor-switch.sh <<'EOF'
set -e
ln -sfn "releases/$1" current.tmp
mv -T current.tmp current
echo "$1" >>history
rmdir lock
EOF
for root in "${FLEET_ROOTS[@]}"; do cp floor-delta.sh floor-switch.sh "$root/"; done

# run_push NAME SERVICE VERSION ARTIFACT [EXTRA...]: a timed push; sets wall_s, rss_kib, bytes
# (summed over the hosts), results (the hosts' results, sorted and counted). With verbosity=-v
# (default -q), its info lines stay in NAME.stderr.
run_push() {
  local name=$1 service=$2 version=$3 artifact=$4 rc=0 t0 t1
  shift 4
  sync
  t0=$(now)
  /usr/bin/time -v -o "$name.time" env -u SSH_AUTH_SOCK -u RUST_LOG NO_COLOR=1 "$deploy_bin" \
    -i deploy.toml push --service "$service" --version "$version" --artifact "$artifact" "$@" \
    --no-progress "${verbosity:--q}" --output json >"$name.json" 2>"$name.stderr" &
  child_pids=($!)
  wait "${child_pids[0]}" || rc=$?
  child_pids=()
  t1=$(now)
  if [ "$rc" != 0 ]; then
    log "deploy push $service $version failed (exit $rc):"
    cat "$name.stderr" "$name.json" >&2
    exit 1
  fi
  wall_s=$(elapsed "$t0" "$t1")
  rss_kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$name.time")
  bytes=$(grep -o '"bytes": *[0-9]*' "$name.json" | grep -o '[0-9]*$' | awk '{ s += $1 } END { print s + 0 }')
  results=$(grep -o '"result": *"[a-z_]*"' "$name.json" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
}

# The plain OpenSSH client's options: the fleet's key and strict known_hosts.
ssh_options=("${FLEET_SSH_OPTIONS[@]}")
# on_every_host WHAT COMMAND [ARGS...]: `COMMAND PORT ARGS...` for every host at once; dies
# naming WHAT when any of them fails.
on_every_host() {
  local what=$1 command=$2 pids=() failed=0 port pid
  shift 2
  for port in "${FLEET_PORTS[@]}"; do
    "$command" "$port" "$@" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  [ "$failed" = 0 ] || die "$failed $what failed"
}
# host_ssh PORT ARGS...: the plain OpenSSH client to one host.
host_ssh() {
  local port=$1
  shift
  env -u SSH_AUTH_SOCK ssh "${ssh_options[@]}" -p "$port" "$FLEET_USER@127.0.0.1" "$@"
}

# plain_push RELEASE ARTIFACT: 8 `ssh host 'tar -xzf -' < artifact` in parallel; sets wall_s.
plain_one() {
  host_ssh "$1" "mkdir -p plain/releases/$2 && tar -xzf - -C plain/releases/$2 && ln -sfn releases/$2 plain/current.tmp && mv -T plain/current.tmp plain/current" <"$3"
}
plain_push() {
  local t0
  sync
  t0=$(now)
  on_every_host "plain ssh pipelines" plain_one "$1" "$2"
  wall_s=$(elapsed "$t0" "$(now)")
}
# rsync_push BASE TREE RELEASE: the unpacked TREE into rsync/releases/RELEASE on every host,
# hard-linking unchanged files from rsync/releases/BASE (none when BASE is empty).
rsync_one() {
  local port=$1 base=$2 tree=$3 release=$4 link=()
  [ -n "$base" ] && link=(--link-dest="../$base")
  env -u SSH_AUTH_SOCK rsync -a "${link[@]}" --rsync-path="mkdir -p rsync/releases && rsync" \
    -e "ssh ${ssh_options[*]} -p $port" "trees/$tree/" "$FLEET_USER@127.0.0.1:rsync/releases/$release/" \
    && host_ssh "$port" "ln -sfn releases/$release rsync/current.tmp && mv -T rsync/current.tmp rsync/current"
}
rsync_push() {
  local t0
  sync
  t0=$(now)
  on_every_host "rsync runs" rsync_one "$@"
  wall_s=$(elapsed "$t0" "$(now)")
}

# check_only RELEASE ARTIFACT: the artifact check of a push (a dry run against a closed port),
# which must end on the refused connection, never on the artifact (exit 2).
check_only() {
  local rc=0
  env -u SSH_AUTH_SOCK NO_COLOR=1 "$deploy_bin" -i check-only.toml push --dry-run --service delta \
    --version "$1" --artifact "$2" --no-progress -q >/dev/null 2>check-only.err || rc=$?
  if [ "$rc" = 0 ] || [ "$rc" = 2 ] || ! grep -q 'cannot connect' check-only.err; then
    die "the check-only run did not end on the closed port (exit $rc): $(cat check-only.err)"
  fi
}
# The floor's OpenSSH client: the fleet's options, the cheapest key exchange, and a control
# connection per host (the switch session goes over the staging session's connection).
floor_ssh_options=("${ssh_options[@]}" -o KexAlgorithms=curve25519-sha256 -o "ControlPath=$FLEET_DIR/control-%p")
floor_stage() {
  env -u SSH_AUTH_SOCK ssh "${floor_ssh_options[@]}" -o ControlMaster=yes -o ControlPersist=60 -p "$1" \
    "$FLEET_USER@127.0.0.1" "cd floor && sh ../floor-delta.sh $2 $3" <floor-v2.tar >/dev/null
}
floor_switch() {
  env -u SSH_AUTH_SOCK ssh "${floor_ssh_options[@]}" -o ControlMaster=no -p "$1" \
    "$FLEET_USER@127.0.0.1" "cd floor && sh ../floor-switch.sh $2" </dev/null >/dev/null
}
# floor_push RELEASE BASE: the check of v2, then floor-delta.sh on every host in parallel (the
# changed files of v2 on its stdin), then once all have staged floor-switch.sh; sets wall_s.
floor_push() {
  local t0 t1 port
  sync
  t0=$(now)
  check_only "$1" v2.tar.gz
  on_every_host "floor stagings" floor_stage "$1" "$2"
  on_every_host "floor switches" floor_switch "$1"
  t1=$(now)
  for port in "${FLEET_PORTS[@]}"; do
    ssh "${floor_ssh_options[@]}" -O exit -p "$port" "$FLEET_USER@127.0.0.1" 2>/dev/null || true
  done
  wall_s=$(elapsed "$t0" "$t1")
}

env -u SSH_AUTH_SOCK NO_COLOR=1 "$deploy_bin" -i deploy.toml check --no-progress -q >/dev/null \
  || die "deploy check failed against the fresh fleet"

delta_walls=() steady_walls=() steady_vouched=() full_walls=() rsync_walls=() plain_walls=() byte_ratios=() rss=() disk_ratios=() repush=()
floor_walls=()
for ((round = 1; round <= rounds; round++)); do
  r=r$round
  log ""
  log "round $round: seeding v1 everywhere (deploy: both services; rsync: the unpacked tree)"
  run_push "$r-seed-delta" delta "$r-v1" v1.tar.gz
  run_push "$r-seed-full" full "$r-v1" v1.tar.gz
  if [ "$rsync_available" = 1 ]; then
    rsync_push "" v1 "$r-v1"
  fi
  # The delta floor's v1: the controller's own tree, hard-linked (the same file system).
  for root in "${FLEET_ROOTS[@]}"; do
    mkdir -p "$root/floor/releases"
    cp -al trees/v1 "$root/floor/releases/$r-v1"
  done

  # The order of the timed runs alternates each round.
  order=(delta full rsync plain floor)
  [ $((round % 2)) = 0 ] && order=(floor plain rsync full delta)
  for which in "${order[@]}"; do
    case $which in
      delta)
        run_push "$r-delta" delta "$r-v2" v2.tar.gz
        delta_wall=$wall_s delta_bytes=$bytes delta_rss=$rss_kib
        log "  delta push of v2:  ${wall_s}s, $bytes bytes, peak RSS $((rss_kib / 1024)) MiB ($results)"
        ;;
      full)
        run_push "$r-full" full "$r-v2" v2.tar.gz --full
        full_wall=$wall_s full_bytes=$bytes
        log "  full push of v2:   ${wall_s}s, $bytes bytes ($results)"
        ;;
      rsync)
        if [ "$rsync_available" = 1 ]; then
          rsync_push "$r-v1" v2 "$r-v2"
          rsync_wall=$wall_s
          log "  rsync --link-dest: ${wall_s}s"
        fi
        ;;
      plain)
        plain_push "$r" v2.tar.gz
        plain_wall=$wall_s
        log "  plain ssh | tar:   ${wall_s}s"
        ;;
      floor)
        floor_push "$r-v2" "$r-v1"
        floor_wall=$wall_s
        log "  floor of a delta:  ${wall_s}s"
        ;;
    esac
  done
  run_push "$r-again" delta "$r-v2" v2.tar.gz
  log "  unchanged re-push: $bytes bytes ($results)"
  repush+=("$bytes")
  for version in 3 4 5; do
    run_push "$r-v$version" delta "$r-v$version" "v$version.tar.gz"
    log "  delta push of v$version: ${wall_s}s, $bytes bytes"
  done
  releases=${FLEET_ROOTS[0]}/delta/releases
  disk_all=$(du -sk "$releases" | cut -f1)
  disk_one=$(du -sk "$releases/$r-v5" | cut -f1)
  log "  host disk: $(ls "$releases" | wc -l) releases in ${disk_all} KiB, one release ${disk_one} KiB"
  # The steady state: v6 prunes v1 (its deletion runs on in the background, and the live
  # release's files are listed again once it is done), then v7 reuses v6's files.
  run_push "$r-v6" delta "$r-v6" v6.tar.gz
  sleep 5
  verbosity=-v run_push "$r-v7" delta "$r-v7" v7.tar.gz
  vouched=$( (grep -o '[0-9]* of [0-9]* reused files vouched' "$r-v7.stderr" || true) \
    | awk '{ a += $1; b += $3 } END { printf "%d of %d", a, b }')
  log "  delta push of v7 after a prune: ${wall_s}s, $bytes bytes, $vouched reused files vouched for"
  steady_walls+=("$wall_s") steady_vouched+=("$vouched")

  delta_walls+=("$delta_wall") full_walls+=("$full_wall") plain_walls+=("$plain_wall")
  floor_walls+=("$floor_wall")
  [ "$rsync_available" = 1 ] && rsync_walls+=("$rsync_wall")
  byte_ratios+=("$(ratio "$delta_bytes" "$full_bytes")") rss+=("$delta_rss")
  disk_ratios+=("$(ratio "$disk_all" "$disk_one")")
  # The floor did the whole job: its v2 is v2, on the first host (the others ran the same).
  diff -r trees/v2 "${FLEET_ROOTS[0]}/floor/releases/$r-v2" >/dev/null || die "the floor's v2 differs from the artifact's tree"
  [ "$(readlink "${FLEET_ROOTS[0]}/floor/current")" = "releases/$r-v2" ] || die "the floor did not switch"
  # The next round starts from v1 again on fresh releases. Trees are removed here, between
  # rounds, never between two timed runs: this disk is mounted with online discard, and
  # removing the plain pipeline's 1.6 GB right after it ran stalled the journal under the next
  # timed run (round two's full push took 29.5-32.7 s where rounds one and three took 20-22 s).
  for root in "${FLEET_ROOTS[@]}"; do rm -rf -- "$root/delta" "$root/full" "$root/rsync" "$root/plain" "$root/floor"; done
  sync
done

# ---------------------------------------------------------------------------------------------
# Report

delta_med=$(median "${delta_walls[@]}")
full_med=$(median "${full_walls[@]}")
plain_med=$(median "${plain_walls[@]}")
bytes_med=$(median "${byte_ratios[@]}")
disk_med=$(median "${disk_ratios[@]}")
rss_max=$(printf '%s\n' "${rss[@]}" | sort -g | tail -n 1)
repush_max=$(printf '%s\n' "${repush[@]}" | sort -g | tail -n 1)
printf '\n'
printf 'delta benchmark: %s hosts on 127.0.0.1, %s MiB / %s files (incompressible), 1%% changed (%s files), %s round(s), %s build, %s CPUs\n' \
  "$host_count" "$mib" "$files" "$changed_count" "$rounds" "$profile" "$(nproc 2>/dev/null || echo '?')"
printf '%-46s %14s   %-12s %s\n' "metric" "figure" "target" "verdict"
printf '%-46s %14s\n' "wall, delta push (median)" "${delta_med}s"
printf '%-46s %14s\n' "wall, delta push after a prune (median)" "$(median "${steady_walls[@]}")s"
printf '%-46s %14s\n' "  reused files vouched for unhashed (last)" "${steady_vouched[${#steady_vouched[@]}-1]}"
printf '%-46s %14s\n' "wall, full push --full (median)" "${full_med}s"
printf '%-46s %14s   %-12s %s\n' "delta / full" "$(ratio "$delta_med" "$full_med")" "<= 0.25" "$(verdict "$(ratio "$delta_med" "$full_med") <= 0.25")"
if [ "$rsync_available" = 1 ]; then
  rsync_med=$(median "${rsync_walls[@]}")
  printf '%-46s %14s\n' "wall, rsync -a --link-dest over OpenSSH" "${rsync_med}s"
  printf '%-46s %14s   %-12s %s\n' "delta / rsync" "$(ratio "$delta_med" "$rsync_med")" "<= 0.5" "$(verdict "$(ratio "$delta_med" "$rsync_med") <= 0.5")"
  floor_med=$(median "${floor_walls[@]}")
  printf '%-46s %14s\n' "wall, floor of a delta push (median)" "${floor_med}s"
  printf '%-46s %14s   %-12s %s\n' "floor of a delta / rsync" "$(ratio "$floor_med" "$rsync_med")" "(no target)" \
    "per round: $(for i in "${!floor_walls[@]}"; do printf '%s ' "$(ratio "${floor_walls[$i]}" "${rsync_walls[$i]}")"; done)"
else
  printf '%-46s %14s\n' "rsync comparison" "not run (no rsync)"
fi
printf '%-46s %14s   %-12s %s\n' "bytes on the wire, delta / full" "$bytes_med" "<= 0.03" "$(verdict "$bytes_med <= 0.03")"
printf '%-46s %14s   %-12s %s\n' "host disk, 5 releases / 1 release" "$disk_med" "<= 1.2" "$(verdict "$disk_med <= 1.2")"
printf '%-46s %14s   %-12s %s\n' "controller peak RSS, delta push" "$((rss_max / 1024)) MiB" "<= 64 MiB" "$(verdict "$rss_max <= 65536")"
printf '%-46s %14s   %-12s %s\n' "unchanged re-push, bytes (all hosts)" "$repush_max" "0" "$(verdict "$repush_max == 0")"
printf '%-46s %14s\n' "wall, plain ssh | tar -xzf (median)" "${plain_med}s"
printf '%-46s %14s   %-12s %s\n' "full push / plain ssh" "$(ratio "$full_med" "$plain_med")" "<= 1.10" "$(verdict "$(ratio "$full_med" "$plain_med") <= 1.10")"
printf '\nper round (s): delta %s | full %s | rsync %s | plain %s | floor of a delta %s\n' \
  "${delta_walls[*]}" "${full_walls[*]}" "${rsync_walls[*]:-}" "${plain_walls[*]}" "${floor_walls[*]}"
printf 'load average (1/5/15 min) at the end: %s (other load on the machine skews the figures)\n' \
  "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
