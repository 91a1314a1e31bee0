#!/usr/bin/env bash
# Build every fuzz target and run each for SECONDS (default 20) from its committed seeds
# (fuzz/seeds/<target>) plus the local working corpus (fuzz/corpus/<target>, gitignored).
# Any crash, panic, leak, timeout or out-of-memory fails the script; libFuzzer leaves the
# input in fuzz/artifacts/<target>/.
#
# Toolchain: nightly if installed, else the stable compiler with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# needs -Z flags). cargo-fuzz is installed if missing.
set -euo pipefail
secs="${1:-20}"
cd "$(dirname "$0")/.."

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
fuzz() { cargo "${toolchain[@]}" fuzz "$@"; }

start=$(date +%s)
fuzz build
echo "fuzz: built every target in $(( $(date +%s) - start )) s"

for target in $(fuzz list); do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzz: $target for ${secs} s"
  # One core; -timeout: a single input taking 10 s is a hang; -rss_limit_mb bounds memory.
  fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz: every target ran ${secs} s without a crash ($(( $(date +%s) - start )) s in all)"
