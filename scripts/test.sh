#!/usr/bin/env bash
# Every test, on a fresh machine: installs the real services the end-to-end tests run against
# (scripts/test-deps.sh: Debian packages, among them an SMTP server, Prometheus and promtool,
# Alertmanager, libfaketime, etcd and protoc for the HA tests, chromium and node for the
# console's browser tests, with their npm packages), then runs the whole suite, then the
# packaging tests (as root). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-deps.sh

# The console's browser scenarios' npm packages (pinned in tests/console/package-lock.json);
# skipped when node_modules was installed from this very lock file.
lock_sum=$(sha256sum tests/console/package-lock.json | cut -d' ' -f1)
if [ "$(cat tests/console/node_modules/.outpost-lock-sha256 2>/dev/null)" != "$lock_sum" ]; then
  (cd tests/console && npm ci --no-audit --no-fund)
  echo "$lock_sum" > tests/console/node_modules/.outpost-lock-sha256
fi

cargo test --workspace "$@"

# The packages: built from the binaries above, installed and removed in a Debian chroot, with a
# packaged hub and three packaged agents enrolled with one token (scripts/test-packages.sh).
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the packaging tests (scripts/test-packages.sh) need root: run as root" >&2
  exit 1
fi
scripts/test-packages.sh
