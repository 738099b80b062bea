#!/usr/bin/env bash
# Installs the Debian packages that dsh's demo and tests use, only those that are missing.
# Usage: scripts/deps.sh [test|demo|bench]
set -euo pipefail
want=()
need() { command -v "$1" >/dev/null 2>&1 || want+=("$2"); }
# Samba in front of dsh (Q: and S: as Windows drives): smbd, its VFS modules (streams_xattr),
# smbclient; the SMB tests' probe also needs Debian's python3-impacket.
samba() {
  need smbd samba; need smbclient smbclient
  compgen -G '/usr/lib/*/samba/vfs/streams_xattr.so' >/dev/null || want+=(samba-vfs-modules)
}
need fusermount3 fuse3
need oathtool oathtool
case "${1:-test}" in
  test) need clamd clamav-daemon; need promtool prometheus; need curl curl; need git git; need sqlite3 sqlite3; need rsync rsync; need gocryptfs gocryptfs; need chromium chromium
        samba; /usr/bin/python3 -c 'import impacket' >/dev/null 2>&1 || want+=(python3-impacket) ;;
  demo) need curl curl; need clamd clamav-daemon; samba ;;
  bench) need gocryptfs gocryptfs; need clamd clamav-daemon; samba ;;
esac
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${want[*]}; run as root or install them: apt-get install -y ${want[*]}" >&2
  exit 1
fi
echo "deps: installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# promtool is all we use of the prometheus package, and Samba is started by the tests and the
# demo with their own configs: keep the packages' services from being started by the install
# (policy-rc.d answering 101 tells invoke-rc.d "not now"), and skip recommends.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
fi
rc=0
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null || rc=$?
[ -n "$made_policy" ] && rm -f "$policy"
exit $rc
