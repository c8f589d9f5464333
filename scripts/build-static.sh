#!/usr/bin/env bash
# Builds the release binary linked statically: target/release/deploy (x86_64-unknown-linux-gnu,
# glibc, static-pie; no dynamic loader, no shared library needed at run time), and checks that
# it is. Prints its path on stdout.
#
# How: `crt-static` is passed to the final crate only (`cargo rustc ... -- -C
# target-feature=+crt-static`). Set for every crate (RUSTFLAGS or .cargo/config.toml without
# --target) it would also reach the proc-macro crates, which cannot be built that way; with
# --target it would build every dependency a second time into target/<triple>/. This way the
# dependencies are the ones `cargo build --release` builds. musl is not used: the toolchain
# here has no musl target. What static glibc costs: README.md, "Static binary".
#
#   scripts/build-static.sh            # --locked; CARGO_TARGET_DIR is honoured
#
# Exit status: 0 with a static binary; 1 when the build fails or the result is not static.
set -euo pipefail
cd "$(dirname "$0")/.."

triple=x86_64-unknown-linux-gnu
host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$host" != "$triple" ]; then
  echo "build-static: this script builds for $triple; this toolchain's host is $host" >&2
  exit 1
fi
cargo rustc --release --locked --bin deploy -- -C target-feature=+crt-static >&2
target=${CARGO_TARGET_DIR:-target}
binary=$target/release/deploy
# A dynamically linked executable names its loader in a PT_INTERP program header (readelf -l
# shows "Requesting program interpreter"); a static one has none.
if LC_ALL=C grep -qa 'ld-linux' <(head -c 4096 "$binary"); then
  echo "build-static: $binary still names a dynamic loader" >&2
  exit 1
fi
echo "$binary"
