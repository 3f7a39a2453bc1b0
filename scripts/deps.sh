#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs the Debian packages pcapline needs to build, test and run, if missing.
#
# When another apt or dpkg holds the package locks (unattended-upgrades on the first
# boot of a cloud machine, say), it waits for them, saying who holds them, for at most
# DEPS_LOCK_TIMEOUT seconds (600 by default). `deps.sh --wait-apt` only does that wait.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-14-dev clang-format
libpcap-dev libssl-dev liblz4-dev libev-dev libyaml-dev libarchive-dev libsqlite3-dev
libjansson-dev libmicrohttpd-dev libcmocka-dev
openssl lz4 tcpdump tshark wireshark-common tcpreplay curl dnsutils
python3 python3-pytest python3-scapy iproute2 procps time netcat-openbsd systemd util-linux
prometheus"
TIMEOUT=${DEPS_LOCK_TIMEOUT:-600}
START=$(date +%s)
# apt-get update takes the lists lock, install the dpkg locks and the archives lock.
LOCKS="/var/lib/apt/lists/lock /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/cache/apt/archives/lock"

# Prints "FILE held by process PID (NAME)" for the first lock someone holds, or nothing.
# apt and dpkg lock with fcntl(), and /proc/locks lists those locks (device:inode) for
# every user, so this needs no privileges and takes no lock itself.
lock_holder() {
	for f in $LOCKS; do
		[ -e "$f" ] || continue
		d=$(stat -c %d "$f")
		id=$(printf '%02x:%02x:%s' $(((d >> 8) & 0xfff)) $(((d & 0xff) | ((d >> 12) & 0xfff00))) "$(stat -c %i "$f")")
		pid=$(awk -v id="$id" '$2 != "->" && $6 == id { print $5; exit }' /proc/locks)
		if [ -n "$pid" ]; then
			echo "$f held by process $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo gone))"
			return 0
		fi
	done
}

# Waits until no lock is held, or fails once DEPS_LOCK_TIMEOUT seconds have passed since
# the start. Says what it waits for when it starts waiting and every 30 s.
wait_apt() {
	said=0
	while h=$(lock_holder) && [ -n "$h" ]; do
		waited=$(($(date +%s) - START))
		if [ "$waited" -ge "$TIMEOUT" ]; then
			echo "deps: gave up after ${waited} s waiting for the package manager: $h" >&2
			return 1
		fi
		if [ "$said" -eq 0 ] || [ $((waited - said)) -ge 30 ]; then
			echo "deps: waiting for the package manager (${waited} s of at most ${TIMEOUT} s): $h" >&2
			said=$((waited > 0 ? waited : 1))
		fi
		sleep 1
	done
}

if [ "${1:-}" = --wait-apt ]; then
	wait_apt
	exit
fi

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
# apt-get update does not wait for the lists lock (DPkg::Lock::Timeout covers only the
# dpkg locks): wait here, and again if another apt took the lock in between.
until wait_apt && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq; do
	[ $(($(date +%s) - START)) -lt "$TIMEOUT" ] && [ -n "$(lock_holder)" ] || exit 1
done
# install's own wait (DPkg::Lock::Timeout) would be silent here (its output is hidden):
# say it first, and let apt wait only for what races in between.
wait_apt
left=$((TIMEOUT - ($(date +%s) - START)))
[ "$left" -gt 0 ] || left=1
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$left" install -y -qq \
	--no-install-recommends $missing >/dev/null
