package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeRecord: decoding never panics, and whatever decodes re-encodes to the very same
// bytes, so that one record has exactly one encoding and one hash.
func FuzzDecodeRecord(f *testing.F) {
	g := goldenRecord()
	good, _ := g.MarshalBinary()
	f.Add(good)
	empty := Record{Time: time.Unix(0, 0)}
	b, _ := empty.MarshalBinary()
	f.Add(b)
	full := goldenRecord()
	full.Object = strings.Repeat("o", MaxField)
	b, _ = full.MarshalBinary()
	f.Add(b)
	f.Add([]byte{1})
	f.Add(good[:len(good)-1])
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Record
		if err := r.UnmarshalBinary(in); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		out, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", in, out)
		}
		if h := r.Hash(); h != sha256.Sum256(in) {
			t.Fatal("Hash is not the SHA-256 of the encoding")
		}
	})
}

// FuzzFrames gives Verify, Read and Open arbitrary log files (seeded with real ones, which
// the fuzzer then mutates) and a head file or none: they may refuse, never panic, and what
// Verify accepts Open accepts too.
func FuzzFrames(f *testing.F) {
	key := testKey(f, 40)
	dir, _ := writeLog(f, key, 3)
	log := readLogFile(f, dir)
	head, err := os.ReadFile(filepath.Join(dir, headName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(log, head)
	f.Add(log, []byte(nil))
	f.Add(log[:len(log)-7], []byte(nil))
	f.Add(append(append([]byte{}, log...), make([]byte, 40)...), []byte(nil))
	f.Add([]byte{0, 0, 0}, []byte(nil))
	f.Add([]byte{}, head)
	f.Fuzz(func(t *testing.T, logBytes, headBytes []byte) {
		d := t.TempDir()
		writeLogFile(t, d, logBytes)
		if headBytes != nil {
			if err := os.WriteFile(filepath.Join(d, headName), headBytes, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		res, verr := Verify(d, key)
		n := uint64(0)
		rerr := Read(d, key, time.Time{}, func(r Record) error {
			n++
			if r.Seq != n {
				t.Fatalf("Read gave seq %d as record %d", r.Seq, n)
			}
			return nil
		})
		if (verr == nil) != (rerr == nil) {
			t.Fatalf("Verify says %v, Read says %v", verr, rerr)
		}
		if verr == nil && n != res.Records {
			t.Fatalf("Verify counts %d records, Read gave %d", res.Records, n)
		}
		l, oerr := Open(d, key, Options{})
		if (verr == nil) != (oerr == nil) {
			t.Fatalf("Verify says %v, Open says %v", verr, oerr)
		}
		if oerr != nil {
			return
		}
		if st := l.Stats(); st.Seq != res.Records || l.Recovered() != (res.TornBytes > 0) {
			t.Fatalf("Open found %d records (recovered %v), Verify %+v", st.Seq, l.Recovered(), res)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if res2, err := Verify(d, key); err != nil || res2.Records != res.Records || res2.TornBytes != 0 {
			t.Fatalf("after Open and Close: %+v %v", res2, err)
		}
	})
}
