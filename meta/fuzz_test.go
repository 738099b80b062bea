package meta

import (
	"bytes"
	"errors"
	"testing"

	"dsh/blob"
)

// The fuzz targets feed garbage to every decoder: none may panic, every refusal wraps
// ErrInvalid, and whatever is accepted must encode back to the very same bytes (the
// encodings are canonical, so a record cannot have two spellings).

func seedInodes(f *testing.F) {
	c := newContent(f)
	c.Segments = []Segment{{Index: 0, Object: blob.NewID()}, {Index: 300, Object: blob.NewID()}}
	for _, n := range []*inode{
		{kind: KindFile, mode: 0o644, nlink: 1, atime: 1, mtime: -2, ctime: 3, share: "s", size: 42, content: c},
		{kind: KindFile, mode: 0o600, share: "", content: Content{}},
		{kind: KindDir, mode: 0o755, nlink: 3, share: "share", parent: 1024, nextSeq: 9, xattrs: 2},
		{kind: KindSymlink, mode: 0o777, nlink: 1, share: "s", target: "../x"},
	} {
		b, err := encodeInode(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 1})
}

func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("refusal %v does not wrap ErrInvalid", err)
	}
}

func FuzzDecodeInode(f *testing.F) {
	seedInodes(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeInode(1, b)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		again, err := encodeInode(n)
		if err != nil {
			// Only a record over kv's value limit may fail to encode.
			checkRefusal(t, err)
			return
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded\n%x\nfrom\n%x", again, b)
		}
		_ = n.attr()
	})
}

func FuzzDecodeDirent(f *testing.F) {
	f.Add(encodeDirent(dirent{ino: 1024, kind: KindDir, seq: 1}))
	f.Add(encodeDirent(dirent{ino: ^Ino(0), kind: KindSymlink, seq: ^uint64(0)}))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeDirent(b)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if again := encodeDirent(e); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x from %x", again, b)
		}
	})
}

func FuzzDecodeOrder(f *testing.F) {
	f.Add(encodeOrder(1024, KindFile, "name"))
	f.Add(encodeOrder(7, KindDir, "a/b"))
	f.Add(encodeOrder(7, KindDir, ".."))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ino, kind, name, err := decodeOrder(b)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if checkName(name) != nil {
			t.Fatalf("accepted bad name %q", name)
		}
		if again := encodeOrder(ino, kind, name); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x from %x", again, b)
		}
	})
}

func FuzzDecodeIno(f *testing.F) {
	f.Add(encodeIno(FirstIno))
	f.Add(encodeIno(0))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ino, err := decodeIno(b)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if again := encodeIno(ino); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x from %x", again, b)
		}
	})
}

func FuzzDecodeUsage(f *testing.F) {
	f.Add(encodeUsage(usage{inodes: 3, bytes: -5}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := decodeUsage(b)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if again := encodeUsage(u); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x from %x", again, b)
		}
	})
}

func FuzzDecodeXattr(f *testing.F) {
	f.Add(encodeXattr([]byte("value")))
	f.Add(encodeXattr(nil))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeXattr(b)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if again := encodeXattr(v); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x from %x", again, b)
		}
	})
}

func FuzzDecodeGarbage(f *testing.F) {
	f.Add(encodeGarbage([]blob.ID{{1}, {2}}))
	f.Add([]byte{1})
	f.Add(append([]byte{1}, make([]byte, 17)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeGarbage(b)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if again := encodeGarbage(ids); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x from %x", again, b)
		}
	})
}

// FuzzParseKeys feeds garbage to the key parsers used on scanned keys.
func FuzzParseKeys(f *testing.F) {
	f.Add(inodeKey(5))
	f.Add(orderKey(5, 6))
	f.Add(xattrKey(5, "user.a"))
	f.Add([]byte("fs/"))
	f.Fuzz(func(t *testing.T, k []byte) {
		for _, err := range []error{
			errOf(parseInoKey(k)), errOf(parseOrderKey(k)), errOf(parseSuffix(k)),
		} {
			if err != nil {
				checkRefusal(t, err)
			}
		}
	})
}

func errOf[T any](_ T, err error) error { return err }

// TestDecodeRefusals pins a few specific refusals the fuzzers might not reach quickly.
func TestDecodeRefusals(t *testing.T) {
	good, err := encodeInode(&inode{kind: KindFile, mode: 0o644, nlink: 1, share: "s",
		content: Content{Segments: []Segment{{Index: 1}, {Index: 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeInode(1, good); err != nil {
		t.Fatal(err)
	}
	mutate := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	segStart := len(good) - 2*(1+blob.IDLen+1)
	for name, b := range map[string][]byte{
		"version 0":       mutate(0, 0),
		"version 3":       mutate(0, 3),
		"segment flags":   mutate(len(good)-1, 2),
		"kind 0":          mutate(1, 0),
		"kind 4":          mutate(1, 4),
		"mode bits":       mutate(2, 0x10),
		"trailing":        append(bytes.Clone(good), 0),
		"truncated":       good[:len(good)-1],
		"segment order":   mutate(segStart, 3),
		"segment count":   mutate(segStart-1, 200),
		"overlong varint": append(append(bytes.Clone(good[:segStart-1]), 0x82, 0x00), good[segStart:]...),
	} {
		if _, err := decodeInode(1, b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
