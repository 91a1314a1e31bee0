#!/usr/bin/env bash
# Every test, on a fresh machine: installs the real services the end-to-end tests run against
# (Debian packages: an SMTP server, Prometheus and promtool, Alertmanager, libfaketime, chromium and
# node for the console's browser tests, with their npm packages), then runs
# the whole suite, then the packaging tests (as root). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have python3 || need+=(python3)                                    # memory-limit test allocates with python3
have systemd-analyze || need+=(systemd)                            # deploy/ unit check
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)  # certificate expiry e2e
{ have prometheus && have promtool; } || need+=(prometheus)        # metrics e2e: scrape, PromQL, promtool
have prometheus-alertmanager || need+=(prometheus-alertmanager)    # alert channel e2e
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)  # e-mail channel e2e
[ -x "${OUTPOST_CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)  # console browser e2e (tests/console)
have node || need+=(nodejs)                                        # console browser e2e: the scenarios' runtime
have npm || need+=(npm)                                            # console browser e2e: playwright-core, axe-core
fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-wqy-microhei)  # console e2e: Chinese pages in screenshots
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "scripts/test.sh: the tests need these Debian packages: ${need[*]}" >&2
    echo "  install them with: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi

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
