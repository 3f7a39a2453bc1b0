#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs the Debian packages pcapline needs to build, test and run, if missing.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-14-dev
libpcap-dev libssl-dev liblz4-dev libev-dev libyaml-dev libarchive-dev libsqlite3-dev
libjansson-dev libmicrohttpd-dev libcmocka-dev
openssl lz4 tcpdump tshark wireshark-common tcpreplay curl dnsutils
python3 python3-pytest python3-scapy iproute2 procps time netcat-openbsd"
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
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
