package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"dsh/vault"
)

// wantChainError checks that err names record seq for reason.
func wantChainError(t *testing.T, what string, err error, seq uint64, reason Reason) *ChainError {
	t.Helper()
	var ce *ChainError
	if !errors.As(err, &ce) || !errors.Is(err, ErrBroken) {
		t.Fatalf("%s: got %v, want a chain error", what, err)
	}
	if ce.Seq != seq || (reason != "" && ce.Reason != reason) {
		t.Fatalf("%s: got %v, want record %d, %s", what, err, seq, reason)
	}
	return ce
}

// mustRefuse checks that Open, when it checks the whole log, refuses it and names the same
// record as Verify. Open checks only what follows the head's record when the head file
// says where that lies (TestOpenChecksFromItsHead); a head of the first format, which
// dsh wrote before segments, says only how far the log went, and Open then walks it all.
// So the head is turned into one of those first.
func mustRefuse(t *testing.T, what, dir string, key *vault.Key, seq uint64) {
	t.Helper()
	path := filepath.Join(dir, headName)
	orig, err := os.ReadFile(path)
	if err == nil {
		defer os.WriteFile(path, orig, 0o600)
		aead, _ := newAEAD(key[:])
		h, ok, err := readHead(dir, aead)
		if err != nil || !ok {
			t.Fatalf("%s: head: %v", what, err)
		}
		writeV1Head(t, dir, key, h.seq, h.hash)
	}
	mustRefuseAsIs(t, what, dir, key, seq)
}

// writeV1Head writes a head file of the first format.
func writeV1Head(t *testing.T, dir string, key *vault.Key, seq uint64, hash [32]byte) {
	t.Helper()
	aead, _ := newAEAD(key[:])
	plain := binary.BigEndian.AppendUint64([]byte{headV1}, seq)
	plain = append(plain, hash[:]...)
	nonce := make([]byte, nonceSize)
	if err := os.WriteFile(filepath.Join(dir, headName), aead.Seal(nonce, nonce, plain, []byte(headAD)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mustRefuseAsIs checks that Open refuses the log as it is, naming record seq.
func mustRefuseAsIs(t *testing.T, what, dir string, key *vault.Key, seq uint64) {
	t.Helper()
	l, err := Open(dir, key, Options{})
	if err == nil {
		l.Close()
		t.Fatalf("%s: Open accepted a damaged log", what)
	}
	wantChainError(t, what+" (Open)", err, seq, "")
}

// TestEveryFlippedByteIsNamed flips each byte of a closed log in turn: Verify and Open must
// both refuse, naming the record whose frame holds the byte.
func TestEveryFlippedByteIsNamed(t *testing.T) {
	key := testKey(t, 20)
	dir, _ := writeLog(t, key, 6)
	orig := readLogFile(t, dir)
	offs := frames(t, orig)
	owner := func(pos int) uint64 {
		seq := uint64(0)
		for i, o := range offs {
			if int64(pos) >= o {
				seq = uint64(i + 1)
			}
		}
		return seq
	}
	for pos := range orig {
		b := append([]byte{}, orig...)
		b[pos] ^= 0x01 << (pos % 8)
		writeLogFile(t, dir, b)
		_, err := Verify(dir, key)
		what := "flip at byte " + strconv.Itoa(pos)
		wantChainError(t, what, err, owner(pos), "")
		mustRefuse(t, what, dir, key, owner(pos))
	}
	writeLogFile(t, dir, orig)
	if _, err := Verify(dir, key); err != nil {
		t.Fatalf("restored log: %v", err)
	}
}

func TestFlippedByteInTheBody(t *testing.T) {
	key := testKey(t, 21)
	dir, _ := writeLog(t, key, 5)
	b := readLogFile(t, dir)
	offs := frames(t, b)
	b[offs[2]+lenSize+nonceSize+10] ^= 0x80
	writeLogFile(t, dir, b)
	_, err := Verify(dir, key)
	ce := wantChainError(t, "flip in record 3", err, 3, ReasonDecrypt)
	if ce.Offset != offs[2] {
		t.Fatalf("offset %d, want %d", ce.Offset, offs[2])
	}
	if !strings.Contains(err.Error(), "audit record 3") || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("message does not say what and where: %v", err)
	}
	mustRefuse(t, "flip in record 3", dir, key, 3)
}

func TestDeletedRecordIsNamed(t *testing.T) {
	key := testKey(t, 22)
	dir, _ := writeLog(t, key, 6)
	b := readLogFile(t, dir)
	offs := frames(t, b)
	cut := append(append([]byte{}, b[:offs[3]]...), b[offs[4]:]...) // record 4 removed
	writeLogFile(t, dir, cut)
	_, err := Verify(dir, key)
	ce := wantChainError(t, "record 4 deleted", err, 4, ReasonGap)
	if !strings.Contains(ce.Detail, "record 5 lies here") {
		t.Fatalf("detail: %q", ce.Detail)
	}
	mustRefuse(t, "record 4 deleted", dir, key, 4)
}

func TestReorderedRecordsAreNamed(t *testing.T) {
	key := testKey(t, 23)
	dir, _ := writeLog(t, key, 6)
	b := readLogFile(t, dir)
	offs := frames(t, b)
	var sw []byte
	sw = append(sw, b[:offs[2]]...)
	sw = append(sw, b[offs[3]:offs[4]]...) // record 4
	sw = append(sw, b[offs[2]:offs[3]]...) // record 3
	sw = append(sw, b[offs[4]:]...)
	writeLogFile(t, dir, sw)
	_, err := Verify(dir, key)
	wantChainError(t, "records 3 and 4 swapped", err, 3, ReasonOrder)
	mustRefuse(t, "records 3 and 4 swapped", dir, key, 3)
}

func TestReplayedRecordIsNamed(t *testing.T) {
	key := testKey(t, 24)
	dir, _ := writeLog(t, key, 4)
	b := readLogFile(t, dir)
	offs := frames(t, b)
	var dup []byte
	dup = append(dup, b[:offs[2]]...)
	dup = append(dup, b[offs[1]:offs[2]]...) // record 2 again
	dup = append(dup, b[offs[2]:]...)
	writeLogFile(t, dir, dup)
	_, err := Verify(dir, key)
	wantChainError(t, "record 2 replayed", err, 3, ReasonOrder)
}

// TestRewrittenRecordBreaksTheChain: someone with the key replaces record 2 by a record of
// their own; it opens, but record 3 no longer holds its hash.
func TestRewrittenRecordBreaksTheChain(t *testing.T) {
	key := testKey(t, 25)
	dir, recs := writeLog(t, key, 4)
	b := readLogFile(t, dir)
	offs := frames(t, b)
	forged := recs[1]
	forged.Result = "denied"
	aead, _ := newAEAD(key[:])
	l := &Log{aead: aead}
	l.seal(&forged, make([]byte, nonceSize))
	var out []byte
	out = append(out, b[:offs[1]]...)
	out = append(out, l.buf...)
	out = append(out, b[offs[2]:]...)
	writeLogFile(t, dir, out)
	_, err := Verify(dir, key)
	wantChainError(t, "record 2 rewritten", err, 3, ReasonChain)
	mustRefuse(t, "record 2 rewritten", dir, key, 3)
}

func TestTornTailIsRecovered(t *testing.T) {
	key := testKey(t, 26)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{})
	appendN(t, l, 5, Durable)
	crash := copyDir(t, dir) // the head is not written: a crash, not a clean stop
	l.Close()
	full := readLogFile(t, crash)
	offs := frames(t, full)
	cuts := map[string][]byte{
		"mid-body":          full[:offs[4]+lenSize+50],
		"mid-length":        full[:offs[4]+2],
		"body less a byte":  full[:len(full)-1],
		"zero-filled tail":  append(append([]byte{}, full[:offs[4]]...), make([]byte, 300)...),
		"zero-filled frame": append(append([]byte{}, full[:len(full)-tagSize]...), make([]byte, tagSize)...),
	}
	for name, b := range cuts {
		d := copyDir(t, crash)
		writeLogFile(t, d, b)
		res, err := Verify(d, key)
		if err != nil || res.Records != 4 || res.TornBytes != int64(len(b))-offs[4] || !strings.Contains(res.Warning, "torn") {
			t.Fatalf("%s: Verify %+v, %v", name, res, err)
		}
		l := openLog(t, d, key, Options{})
		if !l.Recovered() || l.Stats().TornBytes != res.TornBytes {
			t.Fatalf("%s: Open did not report the recovery", name)
		}
		r, err := l.Append(context.Background(), Entry{UID: -1, Action: "audit.recovered", Result: "ok"}, Durable)
		if err != nil || r.Seq != 5 {
			t.Fatalf("%s: append after recovery: seq %d, %v", name, r.Seq, err)
		}
		if res, err := l.Verify(); err != nil || res.Records != 5 || !strings.Contains(res.Warning, "cut away") {
			t.Fatalf("%s: Log.Verify after recovery: %+v %v", name, res, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if res, err := Verify(d, key); err != nil || res.Records != 5 || res.Warning != "" {
			t.Fatalf("%s: Verify after recovery: %+v %v", name, res, err)
		}
	}
}

// TestCutTailAfterCleanClose: whole records cut from the end after a clean shutdown leave a
// well-formed log; only the head file shows what is missing.
func TestCutTailAfterCleanClose(t *testing.T) {
	key := testKey(t, 27)
	dir, _ := writeLog(t, key, 6)
	b := readLogFile(t, dir)
	offs := frames(t, b)
	writeLogFile(t, dir, b[:offs[4]]) // records 5 and 6 gone
	_, err := Verify(dir, key)
	ce := wantChainError(t, "tail cut", err, 5, ReasonTruncated)
	if !strings.Contains(ce.Detail, "reached record 6") {
		t.Fatalf("detail: %q", ce.Detail)
	}
	// Open starts at the head's record, which is gone.
	mustRefuseAsIs(t, "tail cut", dir, key, 6)
	// Cutting mid-frame as well must not pass as a crash either.
	writeLogFile(t, dir, b[:offs[4]+30])
	if _, err := Verify(dir, key); !errors.Is(err, ErrBroken) {
		t.Fatalf("tail cut mid-frame: %v", err)
	}
	mustRefuseAsIs(t, "tail cut mid-frame", dir, key, 6)
	writeLogFile(t, dir, nil)
	wantChainError(t, "log emptied", func() error { _, err := Verify(dir, key); return err }(), 1, ReasonTruncated)
}

func TestHeadTampering(t *testing.T) {
	key := testKey(t, 28)
	dir, _ := writeLog(t, key, 3)
	path := filepath.Join(dir, headName)
	h, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h[30] ^= 1
	if err := os.WriteFile(path, h, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir, key); !errors.Is(err, ErrBadHead) || errors.Is(err, ErrWrongKey) {
		t.Fatalf("altered head: %v", err)
	}
	if _, err := Open(dir, key, Options{}); !errors.Is(err, ErrBadHead) {
		t.Fatalf("Open with an altered head: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	key, other := testKey(t, 29), testKey(t, 99)
	dir, _ := writeLog(t, key, 3)
	if _, err := Verify(dir, other); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Verify with the wrong key: %v", err)
	}
	if _, err := Open(dir, other, Options{}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with the wrong key: %v", err)
	}
	if err := Read(dir, other, time.Time{}, func(Record) error { return nil }); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Read with the wrong key: %v", err)
	}
	// Without a head file (a crash before the first clean close) the records alone tell.
	crash := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, crash, key, Options{})
	appendN(t, l, 2, Durable)
	c := copyDir(t, crash)
	l.Close()
	// Open leaves a head at once now; a crash image of an older dsh had none.
	os.Remove(filepath.Join(c, headName))
	if _, err := Verify(c, other); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key, no head: %v", err)
	}
	// The right key on the same crash image works, with a warning about the missing head.
	if res, err := Verify(c, key); err != nil || res.Records != 2 || !strings.Contains(res.Warning, "no head") {
		t.Fatalf("right key, no head: %+v %v", res, err)
	}
}

// TestTamperUnderARunningDaemon: the open log notices when its file is cut behind its back.
func TestTamperUnderARunningDaemon(t *testing.T) {
	key := testKey(t, 30)
	dir := filepath.Join(t.TempDir(), "audit")
	l := openLog(t, dir, key, Options{})
	defer l.Close()
	appendN(t, l, 5, Durable)
	b := readLogFile(t, dir)
	offs := frames(t, b)
	if err := os.Truncate(filepath.Join(dir, logName), offs[3]); err != nil {
		t.Fatal(err)
	}
	_, err := l.Verify()
	wantChainError(t, "cut under the daemon", err, 4, ReasonTruncated)
}

// TestKeyHolderForgeries: frames sealed with the right key at the right place but holding
// something other than the record that belongs there.
func TestKeyHolderForgeries(t *testing.T) {
	key := testKey(t, 31)
	aead, _ := newAEAD(key[:])
	var ad adBuf
	frame := func(seq uint64, plain []byte) []byte {
		nonce := make([]byte, nonceSize)
		body := aead.Seal(nonce, nonce, plain, ad.forSeq(seq))
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	dir, recs := writeLog(t, key, 2)
	os.Remove(filepath.Join(dir, headName))
	orig := readLogFile(t, dir)

	bad := recs[1].appendCanonical(nil)
	bad = append(bad, 0) // not canonical: a byte left over
	writeLogFile(t, dir, append(append([]byte{}, orig...), frame(3, append(bad[:0:0], bad...))...))
	_, err := Verify(dir, key)
	wantChainError(t, "non-canonical record", err, 3, ReasonEncoding)

	other := recs[1]
	other.Seq, other.Prev = 9, recs[1].Hash() // sealed at place 3, says it is 9
	writeLogFile(t, dir, append(append([]byte{}, orig...), frame(3, other.appendCanonical(nil))...))
	_, err = Verify(dir, key)
	wantChainError(t, "seq inside differs", err, 3, ReasonGap)

	good := recs[1]
	good.Seq, good.Prev = 3, recs[1].Hash()
	writeLogFile(t, dir, append(append([]byte{}, orig...), frame(3, good.appendCanonical(nil))...))
	if res, err := Verify(dir, key); err != nil || res.Records != 3 {
		t.Fatalf("a well-formed third record: %+v %v", res, err)
	}
}

// TestFlippedLastRecordIsNotATornTail: without a head file (after a crash) the last record is
// the easiest to alter unseen; a whole final frame that does not open is still an error.
func TestFlippedLastRecordIsNotATornTail(t *testing.T) {
	key := testKey(t, 32)
	dir, _ := writeLog(t, key, 4)
	if err := os.Remove(filepath.Join(dir, headName)); err != nil {
		t.Fatal(err)
	}
	b := readLogFile(t, dir)
	offs := frames(t, b)
	for _, pos := range []int{int(offs[3]) + lenSize, int(offs[3]) + lenSize + nonceSize + 3, len(b) - 1} {
		c := append([]byte{}, b...)
		c[pos] ^= 0x40
		writeLogFile(t, dir, c)
		_, err := Verify(dir, key)
		wantChainError(t, "flip at byte "+strconv.Itoa(pos), err, 4, ReasonDecrypt)
		mustRefuse(t, "flip at byte "+strconv.Itoa(pos), dir, key, 4)
	}
}
