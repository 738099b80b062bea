#!/usr/bin/env bash
# make demo: a throwaway store in ./demo, the daemon running on it, a tour of what works
# today, then wait for Ctrl-C and stop cleanly. Everything lives under ./demo; rerunning
# starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
dir="$top/demo"
metrics="${DEMO_METRICS:-127.0.0.1:9464}"
portal="${DEMO_PORTAL:-127.0.0.1:8443}"
smbport="${DEMO_SMB_PORT:-4445}"
if [ "$(id -u)" -ne 0 ]; then
  echo "make demo runs as root: it acts as several users (setpriv) and, later, mounts FUSE" >&2
  exit 1
fi

if [ -f "$dir/serve.pid" ]; then
  # A previous demo may still be running if its terminal was closed; stop it first.
  old=$(cat "$dir/serve.pid")
  if kill -TERM "$old" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
  fi
fi
rm -rf "$dir"
mkdir -p "$dir"
# The demo's users need to reach the binary and the socket, and the checkout may sit in a
# folder they cannot enter (/root): both live in a world-reachable run folder.
run_dir=$(mktemp -d /tmp/dsh-demo-XXXXXX)
chmod 755 "$run_dir"
cp "$top/bin/dsh" "$run_dir/dsh"
dsh="$run_dir/dsh"
export DSH_SOCKET="$run_dir/control.sock"
umask 077
head -c 24 /dev/urandom | base64 > "$dir/passphrase"
umask 022

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Create a store (root key sealed by an Argon2id passphrase; Badger encrypted)"
run "$dsh" init --data "$dir/store" --unseal-passphrase-file "$dir/passphrase"

# The Group drive (S:) is mounted under the demo folder when the demo's users can reach it,
# else in the run folder with a link to it from the demo folder.
if setpriv --reuid 65534 --regid 65534 --clear-groups test -x "$dir"; then
  S="$dir/S"; Q="$dir/Q"
else
  S="$run_dir/S"; Q="$run_dir/Q"
  ln -s "$S" "$dir/S"; ln -s "$Q" "$dir/Q"
fi
mkdir -p "$S" "$Q"

say "Start a clamd of the demo's own: the tests' one-signature database, temporary files on tmpfs"
go build -o "$run_dir/testclamd" ./scan/clamdtest/testclamd
mkdir -p "$dir/clamd"
"$run_dir/testclamd" --dir "$dir/clamd" --sample "$run_dir/minutes.txt" >"$dir/clamd.out" 2>&1 &
clamd_pid=$!
for _ in $(seq 100); do [ -s "$dir/clamd.out" ] && break; sleep 0.1; done
clamd_sock=$(head -1 "$dir/clamd.out")
[ -S "$clamd_sock" ] || { cat "$dir/clamd.out" >&2; exit 1; }
echo "clamd listens on $clamd_sock (config: $dir/clamd/clamd.conf)"

# Samba's config is written before the daemon starts: the daemon sets SMB passwords in the
# passdb it names (dsh serve --smb-conf).
"$dsh" smb config --group "$S" --arrivals "$Q" --listen 127.0.0.1 --port "$smbport" --state "$dir/samba" \
  --dsh "$dsh" --out "$dir/samba/smb.conf" >/dev/null

say "Start the daemon (sealed) with the Group drive on $S and Arrivals on $Q; its log is $dir/serve.log"
"$dsh" serve --data "$dir/store" --group "$S" --arrivals "$Q" --metrics "$metrics" --portal "$portal" \
  --smb-conf "$dir/samba/smb.conf" --clamd "$clamd_sock" >"$dir/serve.log" 2>&1 &
pid=$!
echo "$pid" > "$dir/serve.pid"
smbd_pid=
made_accounts=()
stop() {
  local rc=$?
  trap - INT TERM EXIT
  if [ -n "$smbd_pid" ]; then
    say "Stopping Samba"
    kill -TERM "$smbd_pid" 2>/dev/null || true
    wait "$smbd_pid" 2>/dev/null || true
  fi
  for a in "${made_accounts[@]}"; do userdel -f "$a" 2>/dev/null || true; done
  say "Stopping the daemon"
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  kill -TERM "$clamd_pid" 2>/dev/null || true
  wait "$clamd_pid" 2>/dev/null || true
  rm -rf "$run_dir" "$dir/serve.pid"
  echo "stopped; the store stays in $dir/store (rm -rf $dir to forget it)"
  exit "$rc"
}
# Ctrl-C is how the demo is meant to end, so it exits 0; a failed step keeps its status.
trap 'exit 0' INT TERM
trap stop EXIT
for _ in $(seq 50); do "$dsh" operator status >/dev/null 2>&1 && break; sleep 0.1; done

run "$dsh" operator status
say "A wrong passphrase is refused and the store stays sealed"
echo "not the passphrase" | "$dsh" operator unseal || true
say "Unseal with the right one"
run "$dsh" operator unseal < "$dir/passphrase"
run "$dsh" operator status
# The cast: uids need no /etc/passwd entry, dsh only sees numbers.
as() { local uid=$1; shift; printf '$ (as uid %s) dsh %s\n' "$uid" "$*"; setpriv --reuid "$uid" --regid "$uid" --clear-groups "$dsh" "$@"; }
say "A non-root user may not use operator commands"
as 2003 operator status || true

say "The operator creates accounts (each gets a one-time enrolment code) and a project"
declare -A code
for u in alice:2001 bob:2002 carol:2003; do
  id=${u%%:*}; uid=${u##*:}
  out=$("$dsh" user create "$id" --uid "$uid" --email "$id@example.ac.uk")
  printf '$ dsh user create %s --uid %s --email %s@example.ac.uk\n%s\n' "$id" "$uid" "$id" "$out"
  code[$id]=$(sed -n 's/^enrolment code: //p' <<<"$out")
done
run "$dsh" project create cohort --iao alice
run "$dsh" user list

say "Each user enrols from their own uid: password, three security questions, a soft token with a PIN"
# Demo credentials: in real use they are typed at a prompt without echo, never on a command line.
pw="demo password $RANDOM$RANDOM"; pin=2468
declare -A secret
for u in alice:2001 bob:2002 carol:2003; do
  id=${u%%:*}; uid=${u##*:}
  q="$run_dir/questions-$id"
  printf 'First pet?\tRex\nBirth town?\tLeeds\nFirst school?\tSt Mary'"'"'s\n' > "$q"
  chown "$uid:$uid" "$q"; chmod 600 "$q"
  out=$(printf '%s\n%s\n' "$pw" "$pin" | as "$uid" enroll --code "${code[$id]}" --questions-file "$q")
  if [ "$id" = alice ]; then echo "$out"; else echo "$out" | head -2; fi
  secret[$id]=$(grep -o 'secret=[A-Z2-7]*' <<<"$out" | cut -d= -f2)
done
totp() { oathtool --totp -b "${secret[$1]}"; }
# A TOTP code is accepted once: a second login of the same user within one 30-second step
# waits for the next code, as a person would.
declare -A last_step
login() {
  local id=$1 uid=$2
  if [ "${last_step[$id]:-}" = "$(( $(date +%s) / 30 ))" ]; then
    sleep $(( 30 - $(date +%s) % 30 + 1 ))
  fi
  last_step[$id]=$(( $(date +%s) / 30 ))
  printf '%s\n%s\n' "$pw" "$pin" | as "$uid" login --code "$(totp "$id")"
}

say "Logging in needs password, PIN and a code (computed here by oathtool, as an app would)"
printf '%s\n%s\n' "$pw" 9999 | as 2001 login --code "$(totp alice)" || true
login alice 2001
say "The same code a second time is a replay, refused"
c=$(totp bob); printf '%s\n%s\n' "$pw" "$pin" | as 2002 login --code "$c"
printf '%s\n%s\n' "$pw" "$pin" | as 2002 login --code "$c" || true

say "The IAO (alice, logged in) creates a share and adds bob read-write, carol read-only"
as 2001 share create cohort-data --project cohort
as 2001 share add cohort-data bob
as 2001 share add cohort-data carol --read-only
as 2001 share members cohort-data
say "bob's live session received the share's key at once"
as 2002 status

in_as() { local uid=$1; shift; printf '$ (as uid %s) %s\n' "$uid" "$*"; setpriv --reuid "$uid" --regid "$uid" --clear-groups sh -c "$*"; }
say "The Group drive: bob (read-write, logged in) writes and reads a file; he sees it as his own"
in_as 2002 "ls -l $S"
in_as 2002 "echo 'participant,age' > $S/cohort-data/cohort.csv && echo '1,54' >> $S/cohort-data/cohort.csv"
in_as 2002 "cat $S/cohort-data/cohort.csv; ls -l $S/cohort-data"
say "carol is a read-only member but not logged in: she sees nothing; once logged in she reads and may not write"
in_as 2003 "ls -la $S" || true
login carol 2003
in_as 2003 "cat $S/cohort-data/cohort.csv; ls -l $S/cohort-data"
in_as 2003 "echo 2,61 >> $S/cohort-data/cohort.csv" || true
say "alice (the IAO, logged in but no member) and root (no DSH login) see no share at all"
in_as 2001 "ls -la $S; cat $S/cohort-data/cohort.csv" || true
in_as 0 "ls -la $S; cat $S/cohort-data/cohort.csv" || true
say "Arrivals: bob uploads a file; it lands whole in $Q/bob, which only he sees; nothing is written there from inside"
printf 'participant,age\n2,61\n3,47\n' > "$run_dir/new-wave.csv"; chmod 644 "$run_dir/new-wave.csv"
as 2002 upload "$run_dir/new-wave.csv"
as 2002 arrivals list
in_as 2002 "ls -l $Q $Q/bob"
in_as 2003 "ls -la $Q; ls $Q/bob" || true
in_as 2002 "echo x > $Q/bob/mine.txt" || true
say "bob copies the arrival into the share"
in_as 2002 "cp $Q/bob/new-wave.csv $S/cohort-data/ && ls -l $S/cohort-data"
say "On disk everything is ciphertext: no file name, no content"
grep -rl "participant" "$dir/store" || echo "(grep finds no 'participant' under $dir/store)"

say "Samba in front of dsh: S: and Q: as Windows drives (smbd on 127.0.0.1:$smbport, all its state in $dir/samba)"
echo "The smb.conf came from: dsh smb config --group $S --arrivals $Q --listen 127.0.0.1 --port $smbport --state $dir/samba"
grep -E '^\[|root preexec|vfs objects|server smb encrypt|oplocks =|smb2 leases' "$dir/samba/smb.conf"
# Samba maps an SMB user to a Unix account: each user's account is named by their user ID,
# with their uid (the operator's step: useradd -M -N -s /usr/sbin/nologin -u UID ID).
samba_ok=1
for u in alice:2001 bob:2002 carol:2003; do
  id=${u%%:*}; uid=${u##*:}
  if have=$(id -u "$id" 2>/dev/null); then
    [ "$have" = "$uid" ] || { echo "(this host has a user $id with uid $have, not $uid: skipping the Samba part)"; samba_ok=; }
  else
    useradd -M -N -s /usr/sbin/nologin -u "$uid" "$id" && made_accounts+=("$id")
  fi
done
if [ -n "$samba_ok" ]; then
  # Its own session: smbd signals its whole process group when it stops.
  setsid smbd --foreground --no-process-group --debug-stdout -s "$dir/samba/smb.conf" >"$dir/samba/smbd.log" 2>&1 &
  smbd_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$smbport") 2>/dev/null && break; sleep 0.1; done
  say "Each user gets a random SMB password from dsh (needs their live session); Samba stores only its NT hash"
  declare -A smbauth
  for u in bob:2002 carol:2003 alice:2001; do
    id=${u%%:*}; uid=${u##*:}
    out=$(as "$uid" smb password)
    if [ "$id" = bob ]; then echo "$out"; fi
    smbauth[$id]="$run_dir/smbauth-$id"
    (umask 077; printf 'username = %s\npassword = %s\n' "$id" "$(sed -n 's/^password: //p' <<<"$out")" > "${smbauth[$id]}")
  done
  smb() { local id=$1 share=$2; shift 2; printf '$ (as %s) smbclient //127.0.0.1/%s -c %q\n' "$id" "$share" "$*"; smbclient "//127.0.0.1/$share" -p "$smbport" -A "${smbauth[$id]}" -c "$*" 2>&1; }
  say "bob (member, logged in) lists S:, copies a file out and one in"
  smb bob S "ls; ls cohort-data/*; get cohort-data/cohort.csv $run_dir/cohort-from-smb.csv; put $run_dir/new-wave.csv cohort-data/from-windows.csv; ls cohort-data/*"
  cat "$run_dir/cohort-from-smb.csv"
  say "bob's Arrivals through Q:"
  smb bob Q "ls; ls bob/*"
  say "carol (read-only member) reads but may not write"
  smb carol S "get cohort-data/cohort.csv /dev/null; put $run_dir/new-wave.csv cohort-data/carol.csv" || true
  say "alice (the IAO, logged in, no member) sees no share through S: either"
  smb alice S "ls; ls cohort-data/*" || true
  say "After logout, the SMB password alone opens nothing: the tree connect is refused"
  as 2003 logout
  smb carol S "ls" || true
  say "The audit log names each SMB user"
  "$dsh" audit show | grep -E 'smb\.|from-windows|carol\.csv' | tail -n 12
  login carol 2003 >/dev/null 2>&1 || true
fi

say "The airlock, way in: every upload is scanned by clamd before it appears; this one carries the test signature"
chmod 644 "$run_dir/minutes.txt"
as 2002 upload "$run_dir/minutes.txt" || true
in_as 2002 "ls -l $Q/bob"
say "The operator sees the quarantine; a release needs two different people (the uploader never counts)"
run "$dsh" quarantine list
qid=$("$dsh" quarantine list | awk 'NR==2 {print $1}')
run "$dsh" quarantine release "$qid"
run "$dsh" quarantine release "$qid" || true
as 2002 quarantine release "$qid" || true
say "The operator deletes it (a person could also release it as the second person: dsh quarantine release $qid)"
run "$dsh" quarantine delete "$qid"

say "The airlock, way out: bob asks to release a result; its content is frozen (SHA-256) and scanned at once"
as 2001 project iaa add cohort carol
in_as 2002 "printf 'age_band,n\\n40-49,12\\n50-59,31\\n' > $S/cohort-data/table1.csv"
out=$(as 2002 egress request cohort-data table1.csv --reason "Table 1 of the cohort paper")
echo "$out"
eid=$(sed -n 's/^request \(e[0-9a-f]*\): .*/\1/p' <<<"$out")
say "A later write does not change what was requested; the requester may not approve; the reviewers (IAO alice, IAA carol) see the frozen file"
in_as 2002 "echo '60-69,2' >> $S/cohort-data/table1.csv"
as 2002 egress approve "$eid" || true
as 2003 egress view "$eid" 1
as 2001 egress list
say "Two approvals (k = 2 of the project's reviewers)"
as 2001 egress approve "$eid"
as 2003 egress approve "$eid"
as 2001 egress show "$eid"
say "Only bob downloads, only the approved bytes (hashed and scanned again on the way out)"
mkdir -m 777 "$run_dir/out"
as 2001 egress download "$eid" --out "$run_dir/out" || true
as 2002 egress download "$eid" --out "$run_dir/out"
in_as 2002 "cat $run_dir/out/table1.csv; sha256sum $run_dir/out/table1.csv"
as 2001 egress revoke "$eid" --reason "too late" || true

say "Members see their shares; a member may not manage the share"
as 2002 share list
as 2003 share list
as 2002 share add cohort-data carol || true
say "Disabling an account ends its session at once; it keeps its memberships for later"
run "$dsh" user disable bob
as 2002 status
as 2002 share list || true
run "$dsh" user enable bob
as 2002 share list
say "Metrics"
echo "(the full set: curl -s http://$metrics/metrics)"
curl -s "http://$metrics/metrics" | grep -E '^dsh_(vault_sealed|sessions_active|logins_total|lockouts_total|open_files|written_bytes_total|read_bytes_total|ingress_scans_total|quarantine_files|egress_requests_total|egress_downloads_total)|^dsh_access_denied_total|^dsh_fuse_operations_total.*op="(open|create)"' | grep -v ' 0$' || true
say "The audit log"
run "$dsh" audit show
run "$dsh" audit verify
say "The web portal: https://$portal/ (File Transfer, Security & Tokens, Share Manager, Applications & Data)"
echo "Its certificate is self-signed (made at init): $dir/store/portal-cert.pem; accept it in the browser or import it."
echo "Sign in as alice (IAO of project cohort) or bob (member of cohort-data):"
echo "  user ID:  alice   (or bob)"
echo "  password: $pw"
echo "  PIN:      $pin"
echo "  code:     oathtool --totp -b ${secret[alice]}   (bob: oathtool --totp -b ${secret[bob]})"
echo "A code works once: wait for the next 30-second step before reusing oathtool. Signing in starts"
echo "that user's dsh session, as dsh login does; signing out ends it."
if [ -n "$smbd_pid" ]; then
  echo "Samba: smbclient //127.0.0.1/S -p $smbport -A $run_dir/smbauth-bob  (bob's SMB credentials; bob must be logged in)"
fi
say "Running. Group drive: $S, Arrivals: $Q (try: setpriv --reuid 2002 --regid 2002 --clear-groups ls -l $S/cohort-data $Q/bob). Press Ctrl-C to stop."
wait "$pid"
