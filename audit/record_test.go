package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func goldenRecord() Record {
	r := Record{Seq: 7, Time: time.Unix(0, 1767225600123456789).UTC(),
		Entry: Entry{UID: -1, User: "ccaeabc", Action: "share.add", Object: "cohort", Result: "ok", Detail: "iao"}}
	for i := range r.Prev {
		r.Prev[i] = byte(i)
	}
	return r
}

// TestEncodingFrozen pins the bytes and the hash of one record, computed outside Go from
// FORMAT.md. If this test fails, the change breaks every existing hash chain: make a new
// version instead.
func TestEncodingFrozen(t *testing.T) {
	const (
		wantHex = "01" + "0000000000000007" + "18867251f555cd15" + "ffffffffffffffff" +
			"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
			"00000007636361656162630000000973686172652e61646400000006636f686f7274000000026f6b0000000369616f"
		wantHash = "f82fadb0a7f1ee13f73bc136ccf6f84d8ca6150b9d1962b1e3b79ef0bb408cad"
	)
	r := goldenRecord()
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != wantHex {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, wantHex)
	}
	if h := r.Hash(); hex.EncodeToString(h[:]) != wantHash {
		t.Fatalf("hash changed: got %x, want %s", h, wantHash)
	}
	var back Record
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if back != r {
		t.Fatalf("round trip: got %+v, want %+v", back, r)
	}
}

func TestDecodeStrict(t *testing.T) {
	r := goldenRecord()
	good, _ := r.MarshalBinary()
	long := r
	long.Object = strings.Repeat("x", MaxField+1)
	cases := map[string][]byte{
		"empty":          nil,
		"short":          good[:minRecordSize-1],
		"cut string":     good[:len(good)-1],
		"trailing bytes": append(append([]byte{}, good...), 0),
		"version 2":      append([]byte{2}, good[1:]...),
		"version 0":      append([]byte{0}, good[1:]...),
		"over-long":      long.appendCanonical(nil),
		"huge length":    append(append([]byte{}, good[:fixedSize]...), 0xff, 0xff, 0xff, 0xff),
	}
	for name, b := range cases {
		var got Record
		if err := got.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestMarshalRefusesWhatCannotBeRead(t *testing.T) {
	r := goldenRecord()
	r.Detail = strings.Repeat("d", MaxField+1)
	if _, err := r.MarshalBinary(); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("over-long detail: got %v", err)
	}
	r = goldenRecord()
	r.Time = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := r.MarshalBinary(); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("year 3000: got %v", err)
	}
	r = goldenRecord()
	r.Object = strings.Repeat("o", MaxField)
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatalf("a field of exactly MaxField bytes: %v", err)
	}
	var back Record
	if err := back.UnmarshalBinary(b); err != nil || back.Object != r.Object {
		t.Fatalf("MaxField round trip: %v", err)
	}
}

func TestAppendRejectsBadEntries(t *testing.T) {
	l := openLog(t, t.TempDir(), testKey(t, 1), Options{})
	defer l.Close()
	ctx := context.Background()
	bad := map[string]Entry{
		"no action":   {UID: 1, Result: "ok"},
		"no result":   {UID: 1, Action: "share.add"},
		"long object": {UID: 1, Action: "a", Result: "ok", Object: strings.Repeat("p", MaxField+1)},
		"long user":   {UID: 1, Action: "a", Result: "ok", User: strings.Repeat("u", MaxField+1)},
		"long detail": {UID: 1, Action: "a", Result: "ok", Detail: strings.Repeat("d", MaxField+1)},
		"long action": {UID: 1, Action: strings.Repeat("a", MaxField+1), Result: "ok"},
		"long result": {UID: 1, Action: "a", Result: strings.Repeat("r", MaxField+1)},
	}
	for name, e := range bad {
		if _, err := l.Append(ctx, e, Durable); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: got %v, want ErrInvalidEntry", name, err)
		}
	}
	if err := (&Entry{Action: "a", Result: "ok", Object: strings.Repeat("p", MaxField+1)}).validate(); err == nil ||
		!strings.Contains(err.Error(), "object is 8193 bytes") {
		t.Errorf("the error should name the field and its size: %v", err)
	}
	// Nothing was written, so the first good record is still record 1.
	r, err := l.Append(ctx, Entry{UID: -1, Action: "a", Result: "ok"}, Durable)
	if err != nil || r.Seq != 1 {
		t.Fatalf("after refusals: seq %d, %v", r.Seq, err)
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := goldenRecord()
	h0 := base.Hash()
	change := []func(*Record){
		func(r *Record) { r.Seq++ },
		func(r *Record) { r.Time = r.Time.Add(time.Nanosecond) },
		func(r *Record) { r.UID = 0 },
		func(r *Record) { r.User = "x" },
		func(r *Record) { r.Action = "x" },
		func(r *Record) { r.Object = "x" },
		func(r *Record) { r.Result = "x" },
		func(r *Record) { r.Detail = "x" },
		func(r *Record) { r.Prev[31] ^= 1 },
		// Moving a byte from one field to the next must change the hash too.
		func(r *Record) { r.User, r.Action = "ccaeabcs", "hare.add" },
	}
	for i, f := range change {
		r := base
		f(&r)
		if h := r.Hash(); bytes.Equal(h[:], h0[:]) {
			t.Errorf("change %d leaves the hash the same", i)
		}
	}
}
