#!/usr/bin/env bash
# The packaging test (needs root): builds the outpost-hub and outpost-agent .deb packages with
# cargo-deb from the binaries already built (target/debug, as `cargo test` leaves them; the
# release command for operators is `cargo deb -p outpost-hub`), installs them with dpkg in a
# Debian bookworm chroot made by debootstrap, and checks:
#   - the service users and groups, the state directories (0700, owned by the service user), the
#     conffile; the binaries run (`--version`, `outpost-agent validate` on the shipped example);
#   - the installed units, with the PLC drop-ins in /etc/systemd/system/outpost-agent.service.d/,
#     pass `systemd-analyze verify --root=CHROOT`;
#   - a fleet: the packaged hub (`init` and `serve` as outpost-hub) and three packaged agents
#     (each its own config and state dir, run as outpost) enrolled unattended with one token
#     (`token create --uses 3`), all three seen online in `agent list --output json`;
#   - `dpkg -r` keeps data and users, `dpkg --purge` removes both;
#   - deploy/k8s/*.yaml validate offline (kubernetes-validate --strict; never run on a cluster).
# Installs what it lacks (debootstrap via apt, cargo-deb via `cargo install --locked`,
# kubernetes-validate in a venv under target/). Fails loudly; never skips.
#
# The pristine chroot is cached in target/pkg-test/bookworm (made once, never modified); each run
# works on a fresh copy (target/pkg-test/run). Environment: OUTPOST_DEBIAN_MIRROR (default: the
# first Debian mirror in /etc/apt/sources.list*), OUTPOST_PKG_BIN_DIR (default: target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { echo "test-packages [$(($(date +%s) - started))s]: $*" >&2; }
started=$(date +%s)
fail() {
    say "FAIL: $*"
    exit 1
}

if [ "$(id -u)" != 0 ]; then
    say "the packaging tests need root (debootstrap, chroot, dpkg): run as root"
    exit 1
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
WORK=$TARGET/pkg-test
BASE=$WORK/bookworm
RUN=$WORK/run
mkdir -p "$WORK"

# --- tools ---------------------------------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }
if ! have debootstrap; then
    have apt-get || fail "debootstrap is missing and there is no apt-get to install it"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi
have systemd-analyze || fail "systemd-analyze is missing (apt-get install systemd)"

# --- a stale run: processes still rooted in it, mounts, then the directory ------------------------
rooted_in_run() {
    local p r
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        if [ "$r" = "$RUN" ]; then
            echo "${p#/proc/}"
        fi
    done
}
signal_rooted_in_run() {
    local p
    for p in $(rooted_in_run); do kill "-$1" "$p" 2>/dev/null || true; done
}
kill_rooted_in_run() {
    signal_rooted_in_run KILL
}
unmount_run() {
    local m
    for m in "$RUN/proc" "$RUN/dev/pts"; do
        if mountpoint -q "$m" 2>/dev/null; then
            umount "$m" || umount -l "$m"
        fi
    done
}
cleanup() {
    kill_rooted_in_run
    unmount_run
}
trap cleanup EXIT
cleanup
if [ -e "$RUN" ]; then
    grep -q " $RUN/" /proc/mounts && fail "something is still mounted under $RUN"
    rm -rf "$RUN"
fi

# --- the chroot ----------------------------------------------------------------------------------
mirror=${OUTPOST_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    # deb822 (`URIs: ...`) and one-line (`deb [opts] URI suite ...`) sources; the first URI that
    # ends in /debian (not -security, not a third-party repository).
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
if [ ! -f "$BASE/.outpost-complete" ]; then
    rm -rf "$BASE"
    say "debootstrap bookworm from $mirror into $BASE (once; cached)"
    # systemd for `systemd-analyze verify --root` (the units need its targets); it is not run.
    debootstrap --variant=minbase --include=systemd bookworm "$BASE" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        fail "debootstrap failed; see $WORK/debootstrap.log"
    touch "$BASE/.outpost-complete"
fi
cp -a "$BASE" "$RUN"
mount -t proc proc "$RUN/proc"
in_root() { chroot "$RUN" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
as_hub() { in_root HOME=/var/lib/outpost-hub setpriv --reuid=outpost-hub --regid=outpost-hub --init-groups "$@"; }
as_agent() { in_root HOME=/var/lib/outpost-agent setpriv --reuid=outpost --regid=outpost --init-groups "$@"; }

# --- the packages --------------------------------------------------------------------------------
BIN_DIR=${OUTPOST_PKG_BIN_DIR:-$TARGET/debug}
if [ ! -x "$BIN_DIR/outpost-hub" ] || [ ! -x "$BIN_DIR/outpost-agent" ]; then
    say "no binaries in $BIN_DIR: cargo build -p outpost-hub -p outpost-agent"
    cargo build -p outpost-hub -p outpost-agent
fi
# cargo-deb packages target/release/...: give it the built binaries as such (--no-build), stripped
# (a debug binary compresses slowly).
CT=$WORK/cargo-target
rm -rf "$CT" "$WORK/debs"
mkdir -p "$CT/release" "$WORK/debs"
cp "$BIN_DIR/outpost-hub" "$BIN_DIR/outpost-agent" "$CT/release/"
for p in outpost-hub outpost-agent; do
    CARGO_TARGET_DIR=$CT cargo deb -p "$p" --no-build --strip --fast -o "$WORK/debs/$p.deb" >"$WORK/cargo-deb-$p.log" 2>&1 ||
        fail "cargo deb -p $p failed; see $WORK/cargo-deb-$p.log"
done
cp "$WORK/debs/outpost-hub.deb" "$WORK/debs/outpost-agent.deb" "$RUN/tmp/"
say "packages built"

# --- install -------------------------------------------------------------------------------------
say "dpkg -i outpost-hub outpost-agent"
in_root dpkg -i /tmp/outpost-hub.deb /tmp/outpost-agent.deb >"$WORK/dpkg-install.log" 2>&1 ||
    fail "dpkg -i failed; see $WORK/dpkg-install.log"
grep -q "systemctl\|Failed" "$WORK/dpkg-install.log" && fail "dpkg -i printed a systemctl failure: $(cat "$WORK/dpkg-install.log")"

expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
in_root getent passwd outpost-hub >/dev/null || fail "no user outpost-hub"
in_root getent group outpost-hub >/dev/null || fail "no group outpost-hub"
in_root getent passwd outpost >/dev/null || fail "no user outpost"
in_root getent group outpost >/dev/null || fail "no group outpost"
expect_eq "$(in_root stat -c '%a %U %G' /var/lib/outpost-hub)" "700 outpost-hub outpost-hub" /var/lib/outpost-hub
expect_eq "$(in_root stat -c '%a %U %G' /var/lib/outpost-agent)" "700 outpost outpost" /var/lib/outpost-agent
expect_eq "$(in_root stat -c '%a %U %G' /usr/bin/outpost-hub)" "755 root root" /usr/bin/outpost-hub
expect_eq "$(in_root stat -c '%a %U %G' /usr/bin/outpost-agent)" "755 root root" /usr/bin/outpost-agent
in_root dpkg-query -W -f='${Conffiles}\n' outpost-agent | grep -q '/etc/outpost/agent.toml' ||
    fail "/etc/outpost/agent.toml is not a conffile of outpost-agent"
for u in outpost-hub outpost-agent; do
    in_root test -f "/usr/lib/systemd/system/$u.service" || fail "$u.service not installed"
    # Installed, not enabled (a hub needs init, an agent enrollment): nothing in wants/.
    in_root test ! -e "/etc/systemd/system/multi-user.target.wants/$u.service" || fail "$u.service enabled at install"
done
in_root outpost-hub --version | grep -q '^outpost-hub ' || fail "outpost-hub --version"
in_root outpost-agent --version | grep -q '^outpost-agent ' || fail "outpost-agent --version"
as_agent outpost-agent validate --config /etc/outpost/agent.toml /usr/share/doc/outpost-agent/examples/hello.yaml >/dev/null ||
    fail "outpost-agent validate of the shipped example"

# --- units and drop-ins --------------------------------------------------------------------------
dropins=/usr/share/doc/outpost-agent/examples/outpost-agent.service.d
ls "$RUN$dropins"/*.conf >/dev/null || fail "no drop-ins in $dropins"
mkdir -p "$RUN/etc/systemd/system/outpost-agent.service.d"
cp "$RUN$dropins"/*.conf "$RUN/etc/systemd/system/outpost-agent.service.d/"
verify() {
    local out
    if ! out=$(systemd-analyze verify --root="$RUN" outpost-hub.service outpost-agent.service 2>&1) || [ -n "$out" ]; then
        echo "$out"
        return 1
    fi
}
out=$(verify) || fail "systemd-analyze verify --root: $out"
# The drop-ins are read: a broken one is caught.
printf '[Service]\nRestrictAddressFamilies=AF_NOT_A_FAMILY\n' >"$RUN/etc/systemd/system/outpost-agent.service.d/zz-broken.conf"
verify >/dev/null && fail "systemd-analyze verify --root did not read the drop-ins (a broken one passed)"
rm "$RUN/etc/systemd/system/outpost-agent.service.d/zz-broken.conf"
say "units verified with drop-ins: $(cd "$RUN$dropins" && echo *.conf)"

# --- the fleet: packaged hub + three packaged agents, one token ----------------------------------
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
QUIC=$(port)
API=$(port)
as_hub outpost-hub init --data-dir /var/lib/outpost-hub/data --name hub.test >"$WORK/hub-init.log" 2>&1 ||
    fail "outpost-hub init as outpost-hub; see $WORK/hub-init.log"
# As the docs say: the config init wrote, installed where the unit reads it, then edited (here:
# free loopback ports instead of the defaults).
in_root install -m 0640 -o root -g outpost-hub /var/lib/outpost-hub/data/hub.toml /etc/outpost/hub.toml
sed -i -E "s/^quic_listen = .*/quic_listen = \"127.0.0.1:$QUIC\"/; s/^http_listen = .*/http_listen = \"127.0.0.1:$API\"/" \
    "$RUN/etc/outpost/hub.toml"
grep -q "^quic_listen = \"127.0.0.1:$QUIC\"" "$RUN/etc/outpost/hub.toml" || fail "hub.toml from init has no quic_listen line"
pids=()
as_hub outpost-hub serve --config /etc/outpost/hub.toml >"$WORK/hub.log" 2>&1 &
pids+=($!)
hubcli() { as_hub outpost-hub --config /etc/outpost/hub.toml "$@"; }
wait_for() {
    local what=$1 secs=$2
    shift 2
    local end=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}
wait_for "the hub API" 60 hubcli agent list --output json
say "hub serving"
TOKEN=$(hubcli token create --uses 3 --ttl 1h --labels site=plant-1 2>/dev/null) || fail "token create --uses 3"
# Agent 1 as the docs give it: the shipped /etc/outpost/agent.toml with a [hub] section appended
# (state in /var/lib/outpost-agent); agents 2 and 3 each their own config and state directory.
printf '[hub]\naddress = "127.0.0.1:%s"\n' "$QUIC" >>"$RUN/etc/outpost/agent.toml"
for i in 2 3; do
    cat >"$RUN/etc/outpost/agent-$i.toml" <<EOF
state_dir = "/var/lib/outpost-agent/agent-$i"
workflows_dir = "/etc/outpost/workflows"
[hub]
address = "127.0.0.1:$QUIC"
EOF
done
for i in 1 2 3; do
    cfg=/etc/outpost/agent-$i.toml state=/var/lib/outpost-agent/agent-$i
    if [ "$i" = 1 ]; then cfg=/etc/outpost/agent.toml state=/var/lib/outpost-agent; fi
    # Unattended: the token from the environment (not argv), no prompt.
    in_root HOME=/var/lib/outpost-agent OUTPOST_ENROLL_TOKEN="$TOKEN" \
        setpriv --reuid=outpost --regid=outpost --init-groups \
        outpost-agent enroll --config "$cfg" --hub "127.0.0.1:$QUIC" \
        </dev/null >"$WORK/enroll-$i.log" 2>&1 || fail "enroll agent $i; see $WORK/enroll-$i.log"
    expect_eq "$(in_root stat -c '%a %U' "$state")" "700 outpost" "agent $i state dir"
    as_agent outpost-agent serve --config "$cfg" >"$WORK/agent-$i.log" 2>&1 &
    pids+=($!)
done
online() {
    hubcli agent list --output json | python3 -c '
import json, sys
agents = json.load(sys.stdin)
sys.exit(0 if len(agents) == 3 and all(a["online"] for a in agents) and all(a["labels"].get("site") == "plant-1" for a in agents) else 1)'
}
wait_for "three agents online in agent list" 60 online
say "hub and three agents enrolled with one token, all online"
# A fourth enrollment with the used-up token is refused.
cat >"$RUN/etc/outpost/agent-4.toml" <<EOF
state_dir = "/var/lib/outpost-agent/agent-4"
[hub]
address = "127.0.0.1:$QUIC"
EOF
if in_root OUTPOST_ENROLL_TOKEN="$TOKEN" setpriv --reuid=outpost --regid=outpost --init-groups \
    outpost-agent enroll --config /etc/outpost/agent-4.toml --hub "127.0.0.1:$QUIC" </dev/null >"$WORK/enroll-4.log" 2>&1; then
    fail "a fourth agent enrolled with a token good for three"
fi
grep -qi "token" "$WORK/enroll-4.log" || fail "the fourth enrollment failed, but not for its token: $(cat "$WORK/enroll-4.log")"
# Stop the hub and the agents (SIGTERM, as systemd would), then they must be gone.
signal_rooted_in_run TERM
end=$(($(date +%s) + 30))
while [ -n "$(rooted_in_run)" ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "hub or agents still running 30s after SIGTERM"
    sleep 0.5
done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done

# --- remove keeps data, purge removes it ---------------------------------------------------------
in_root dpkg -r outpost-hub outpost-agent >"$WORK/dpkg-remove.log" 2>&1 || fail "dpkg -r; see $WORK/dpkg-remove.log"
in_root test ! -e /usr/bin/outpost-hub || fail "dpkg -r left /usr/bin/outpost-hub"
in_root test ! -e /usr/bin/outpost-agent || fail "dpkg -r left /usr/bin/outpost-agent"
in_root test -f /var/lib/outpost-hub/data/hub.redb || fail "dpkg -r removed the hub's store"
in_root test -d /var/lib/outpost-agent/agent-2 || fail "dpkg -r removed an agent's state"
in_root test -f /var/lib/outpost-agent/agent.redb || fail "dpkg -r removed the agent's store"
in_root grep -q "^\[hub\]" /etc/outpost/agent.toml || fail "dpkg -r removed or reverted the edited conffile"
in_root getent passwd outpost-hub >/dev/null || fail "dpkg -r removed the user outpost-hub"
in_root getent passwd outpost >/dev/null || fail "dpkg -r removed the user outpost"
in_root dpkg --purge outpost-hub outpost-agent >"$WORK/dpkg-purge.log" 2>&1 || fail "dpkg --purge; see $WORK/dpkg-purge.log"
for gone in /var/lib/outpost-hub /var/lib/outpost-agent /etc/outpost/agent.toml /etc/outpost/hub.toml; do
    in_root test ! -e "$gone" || fail "dpkg --purge left $gone"
done
for u in outpost-hub outpost; do
    in_root getent passwd "$u" >/dev/null && fail "dpkg --purge left the user $u"
    in_root getent group "$u" >/dev/null && fail "dpkg --purge left the group $u"
done
say "remove kept data and users; purge removed them"

# --- Kubernetes manifests, offline ---------------------------------------------------------------
VENV=$WORK/venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q kubernetes-validate
fi
"$VENV/bin/kubernetes-validate" --strict --quiet "$ROOT"/deploy/k8s/*.yaml || fail "deploy/k8s does not validate"
say "deploy/k8s validated offline (kubernetes-validate --strict)"

say ok
