#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Makes the Debian bookworm tree that test_systemd.py boots with systemd-nspawn to run
# the units for real: systemd and the runtime libraries of pcapline, nothing of
# pcapline itself (the test binds its own `make install` into it).
#   tests/integration/nspawn-image.sh [DIR]   (default /var/tmp/pcapline-nspawn/root)
# Needs root, the Debian archive, and the packages debootstrap and systemd-container.
set -eu
DIR=${1:-/var/tmp/pcapline-nspawn/root}
LIBS="libpcap0.8 libssl3 liblz4-1 libev4 libyaml-0-2 libarchive13 libsqlite3-0 libjansson4 libmicrohttpd12"
if [ -x "$DIR/lib/systemd/systemd" ]; then
	echo "nspawn image: $DIR exists"
	exit 0
fi
for p in debootstrap systemd-container; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done
mkdir -p "$(dirname "$DIR")"
debootstrap --variant=minbase --include="systemd,systemd-sysv,dbus,$(echo $LIBS | tr ' ' ,)" \
	bookworm "$DIR.tmp" >"$DIR.log" 2>&1 || { echo "debootstrap failed: see $DIR.log" >&2; exit 1; }
echo pcapline-test >"$DIR.tmp/etc/hostname"
# debootstrap's minimal variant writes no hosts file; the sensor reads one (names).
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$DIR.tmp/etc/hosts"
mv "$DIR.tmp" "$DIR"
echo "nspawn image: $DIR ready"
