#!/bin/sh
# Health check of @SERVICE@, written by `deploy init`. deploy runs it on each host after switching
# `current` and running the after_switch hooks (which restarted the service), in the new
# release's directory, with DEPLOY_SERVICE, DEPLOY_HOST, DEPLOY_VERSION, DEPLOY_PREVIOUS,
# DEPLOY_RELEASE_DIR and DEPLOY_BASE_DIR set. Exit 0: healthy. Anything else: deploy tries
# again (health_check retries and interval in deploy.toml), then switches this host back to its
# previous release. What it prints on stderr ends up in deploy's result.
set -u

# 1. systemd runs the service (restarted from the new release by the after_switch hook).
if ! systemctl is-active --quiet @SERVICE@; then
  echo "@SERVICE@ is not active: see systemctl status @SERVICE@ and journalctl -u @SERVICE@" >&2
  exit 1
fi

# 2. It answers. Uncomment and adapt when it serves HTTP:
# curl -fsS --max-time 2 http://127.0.0.1:8080/healthz >/dev/null || exit 1

exit 0
