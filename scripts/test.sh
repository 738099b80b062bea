#!/usr/bin/env bash
# The one test script, called by `make test` and CI: formatting, vet, banned patterns, then
# every test with the race detector. Its last line counts the tests: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
# Lock the script itself: two runs in one checkout would fight over bin/dsh and mounts.
exec 9<"$0"
flock -n 9 || { echo "another dsh test run is going on in this checkout; waiting" >&2; flock 9; }

fail=0
log=$(mktemp)
# Each run has its own temporary folder, so that two checkouts testing at once (worktrees)
# never count or clean up each other's mounts. Tests act as other uids too: like /tmp, it
# is sticky and open to all.
run_tmp=$(mktemp -d -t dsh-test-run-XXXXXX)
chmod 1777 "$run_tmp"
trap 'rm -f "$log"; rm -rf --one-file-system "$run_tmp" 2>/dev/null' EXIT

bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change: $bad"; fail=1; fi
go vet ./... || fail=1
# Panics are for impossible states, never for input; the grep keeps them rare and visible.
if grep -rn --include='*.go' -E '^\s*panic\(' --exclude='*_test.go' . | grep -v 'vault: hkdf' ; then
  echo "naked panic outside tests (see above)"; fail=1
fi
if [ "${CI:-}" = true ] && [ ! -c /dev/fuse ]; then
  echo "CI=true but /dev/fuse is missing: the end-to-end tests need FUSE"; fail=1
fi

TMPDIR="$run_tmp" go test -race -count=1 -timeout 40m -v ./... 2>&1 | tee "$log" | grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|ok |FAIL|panic:|\s+\S+_test\.go:[0-9]+:)' | grep -v '^=== RUN'
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  fail=1
  # The filter above hides build errors; show the end of the full log.
  echo "---- last lines of the go test output ----"
  tail -n 60 "$log"
fi

mounts=$(awk -v d="$run_tmp/" '$3 ~ /^fuse/ && index($2, d) == 1' /proc/mounts | wc -l)
if [ "$mounts" -gt 0 ]; then echo "tests left $mounts dsh mounts behind"; fail=1; fi

passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
if [ "$fail" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$fail"
