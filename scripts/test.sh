#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (OpenSSH server and client, tmux
# for the terminal test, curl for host-side downloads), then runs the whole suite:
# formatting, clippy (warnings are errors), unit tests and the real-sshd integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_install=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_install+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_install+=(openssh-client)
command -v tar >/dev/null 2>&1 || need_install+=(tar)
command -v tmux >/dev/null 2>&1 || need_install+=(tmux)
# The test hosts download URL artifacts themselves (fetch = "host") with curl or wget.
command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1 || need_install+=(curl)
command -v gzip >/dev/null 2>&1 || need_install+=(gzip)
if [ ${#need_install[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need_install[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null
  else
    echo "missing: ${need_install[*]}. Install them (Debian: sudo apt-get install ${need_install[*]})." >&2
    exit 1
  fi
fi
# sshd refuses to start as root without its privilege-separation directory.
if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 0755 /run/sshd; fi

cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Two cores: the integration tests each start their own sshd fleet; a few at a time is plenty.
cargo test --all-targets -- --test-threads="${DEPLOY_TEST_THREADS:-4}"
