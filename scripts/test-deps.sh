#!/usr/bin/env bash
# What the tests need on a fresh machine, as Debian packages (installed when run as root with
# apt-get; otherwise the missing ones are named and this fails). Called by scripts/test.sh, and
# by .ci/run before its lint build (the workspace build has the hub's `ha` feature, whose
# etcd-client needs protoc).
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
have etcd || need+=(etcd-server)                                   # HA e2e: a three-member etcd cluster
have protoc || need+=(protobuf-compiler)                           # the hub's `ha` feature (etcd-client's gRPC code)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)  # HA e2e: the shared run history (a server per test)
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

