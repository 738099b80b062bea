#!/usr/bin/env bash
# make demo: a throwaway store in ./demo, the daemon running on it, a tour of what works
# today, then wait for Ctrl-C and stop cleanly. Everything lives under ./demo; rerunning
# starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
dsh="$top/bin/dsh"
dir="$top/demo"
metrics="${DEMO_METRICS:-127.0.0.1:9464}"

if [ -d "$dir" ]; then
  # A previous demo may still be mounted or running if it was killed; clean it first.
  pkill -f "$dsh serve --data $dir/store" 2>/dev/null && sleep 1 || true
  rm -rf "$dir"
fi
mkdir -p "$dir"
chmod 755 "$dir"
export DSH_SOCKET="$dir/control.sock"
umask 077
head -c 24 /dev/urandom | base64 > "$dir/passphrase"
umask 022

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Create a store (root key sealed by an Argon2id passphrase; Badger encrypted)"
run "$dsh" init --data "$dir/store" --unseal-passphrase-file "$dir/passphrase"

say "Start the daemon (sealed), log in $dir/serve.log"
"$dsh" serve --data "$dir/store" --metrics "$metrics" >"$dir/serve.log" 2>&1 &
pid=$!
stop() {
  trap - INT TERM EXIT
  say "Stopping the daemon"
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "stopped; the store stays in $dir/store (rm -rf $dir to forget it)"
}
trap stop INT TERM EXIT
for _ in $(seq 50); do "$dsh" operator status >/dev/null 2>&1 && break; sleep 0.1; done

run "$dsh" operator status
say "A wrong passphrase is refused and the store stays sealed"
echo "not the passphrase" | "$dsh" operator unseal || true
say "Unseal with the right one"
run "$dsh" operator unseal < "$dir/passphrase"
run "$dsh" operator status
say "A non-root user may not use operator commands"
if id -u nobody >/dev/null 2>&1; then setpriv --reuid nobody --regid nogroup --clear-groups "$dsh" operator status || true; fi
say "Metrics"
curl -s "http://$metrics/metrics" | grep '^dsh_' || true
say "The audit log"
run "$dsh" audit show
run "$dsh" audit verify
say "Running. Press Ctrl-C to stop."
wait "$pid"
