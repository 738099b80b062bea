#!/usr/bin/env bash
# Installs the Debian packages that dsh's demo and tests use, only those that are missing.
# Usage: scripts/deps.sh [test|demo|bench]
set -euo pipefail
want=()
need() { command -v "$1" >/dev/null 2>&1 || want+=("$2"); }
need fusermount3 fuse3
need oathtool oathtool
case "${1:-test}" in
  test) need promtool prometheus; need curl curl ;;
  bench) need gocryptfs gocryptfs ;;
esac
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${want[*]}; run as root or install them: apt-get install -y ${want[*]}" >&2
  exit 1
fi
echo "deps: installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# --no-install-recommends keeps the prometheus package from pulling in a web stack; its
# service is not started in a container without systemd, and promtool is all we use.
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
for p in "${want[@]}"; do
  [ "$p" = prometheus ] && { pkill -x prometheus 2>/dev/null || true; }
done
exit 0
