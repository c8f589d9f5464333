#!/usr/bin/env bash
# Builds deploy linked statically (x86_64-unknown-linux-gnu, glibc, static-pie: no dynamic
# loader, no shared library at run time), checks that it is, and prints its path on stdout.
#
#   scripts/build-static.sh            # the release build: target/release/deploy
#   scripts/build-static.sh --debug    # dev profile, into target/static-dev/debug/deploy
#                                      # (tests/it/static_binary.rs; target/debug/deploy is kept)
#
# How: `crt-static` is passed to the final crate only (`cargo rustc ... -- -C
# target-feature=+crt-static`). Set for every crate (RUSTFLAGS or .cargo/config.toml without
# --target) it would also reach the proc-macro crates, which cannot be built that way; with
# --target it would build every dependency a second time into target/<triple>/. This way the
# dependencies are the ones `cargo build [--release]` builds, and only deploy itself is
# compiled again (as a unit of its own: the `static` feature, so the two builds of deploy do not
# recompile each other). --debug keeps cargo's intermediate files in target/ (build-dir, shared with
# the normal build) but puts the binary in target/static-dev/, so a test suite using
# target/debug/deploy at the same time is not disturbed. musl is not used: the toolchain here
# has no musl target. What static glibc costs: README.md, "Static binary".
#
# --locked; CARGO_TARGET_DIR is honoured. Exit status: 0 with a static binary; 1 when the build
# fails or the result names a dynamic loader.
set -euo pipefail
cd "$(dirname "$0")/.."

triple=x86_64-unknown-linux-gnu
host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$host" != "$triple" ]; then
  echo "build-static: this script builds for $triple; this toolchain's host is $host" >&2
  exit 1
fi
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
static=(--features static -- -C target-feature=+crt-static)
case ${1:-} in
  "")
    cargo rustc --release --locked --bin deploy "${static[@]}" >&2
    binary=$target/release/deploy
    ;;
  --debug)
    CARGO_BUILD_BUILD_DIR=$target cargo rustc --locked --bin deploy \
      --target-dir "$target/static-dev" "${static[@]}" >&2
    binary=$target/static-dev/debug/deploy
    ;;
  *)
    echo "usage: scripts/build-static.sh [--debug]" >&2
    exit 2
    ;;
esac
# A dynamically linked executable names its loader in a PT_INTERP program header (readelf -l
# shows "Requesting program interpreter"); a static one has none.
if LC_ALL=C grep -qa 'ld-linux' <(head -c 4096 "$binary"); then
  echo "build-static: $binary still names a dynamic loader" >&2
  exit 1
fi
echo "$binary"
