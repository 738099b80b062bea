package tests

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"dsh/audit"
	"dsh/blob"
	"dsh/kv"
	"dsh/store"
	"dsh/vault"
)

// TestNothingPlaintextAtRest writes a marker string through every part of a real store, the
// way the filesystem will (a file name in the metadata, its content in a blob sealed with a
// wrapped per-file key, an audit record naming it), closes it, and greps every byte under
// the data folder for the marker.
func TestNothingPlaintextAtRest(t *testing.T) {
	const marker = "PATIENT-ZX81-Smith-1956-03-02"
	e := newEnv(t)
	p, err := store.Unseal(e.data, []byte("correct horse battery staple"), store.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// A file name in the namespace, as the filesystem keeps it.
	if err := p.KV.Update(ctx, func(tx kv.Txn) error {
		return tx.Set([]byte("fs/dirent/1/"+marker+".csv"), []byte(`{"name":"`+marker+`.csv"}`))
	}); err != nil {
		t.Fatal(err)
	}
	// Its content, sealed with a per-file key wrapped by a share key.
	shareKey, _ := vault.NewKey()
	fileKey, _ := vault.NewKey()
	wrapped, err := vault.WrapKey(&shareKey, &fileKey, []byte("file:"+marker))
	if err != nil {
		t.Fatal(err)
	}
	wb, _ := wrapped.MarshalBinary()
	if err := p.KV.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("fs/key/1"), wb) }); err != nil {
		t.Fatal(err)
	}
	cc, err := vault.NewContentCipher(&fileKey)
	if err != nil {
		t.Fatal(err)
	}
	fid, _ := vault.NewFileID()
	oid, _ := vault.NewObjectID()
	pending, err := p.Blobs.Create(ctx, blob.NewID())
	if err != nil {
		t.Fatal(err)
	}
	w, err := vault.NewObjectWriter(pending, cc, vault.ObjectHeader{FileID: fid, ObjectID: oid})
	if err != nil {
		t.Fatal(err)
	}
	content := strings.Repeat(marker+",blood pressure,120/80\n", 10000)
	if _, err := w.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pending.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// And an audit record that names the file.
	if _, err := p.Audit.Append(ctx, audit.Entry{UID: 1000, User: "ccaeabc", Action: "fs.open", Object: "s1/" + marker + ".csv", Result: "ok"}, audit.Durable); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	var files int
	err = filepath.WalkDir(e.data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, needle := range [][]byte{[]byte(marker), []byte("PATIENT-ZX81"), []byte("blood pressure")} {
			if bytes.Contains(b, needle) {
				t.Errorf("%s holds %q in plaintext", path, needle)
			}
		}
		if bytes.Contains(b, fileKey[:]) || bytes.Contains(b, shareKey[:]) {
			t.Errorf("%s holds a key in plaintext", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Fatalf("only %d files under the data folder; the test would prove little", files)
	}

	// The data is really there: reopen and read it back.
	p, err = store.Unseal(e.data, []byte("correct horse battery staple"), store.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var got []byte
	if err := p.KV.View(ctx, func(tx kv.Txn) error {
		var err error
		got, err = tx.Get([]byte("fs/dirent/1/" + marker + ".csv"))
		return err
	}); err != nil || !bytes.Contains(got, []byte(marker)) {
		t.Fatalf("name not read back: %q %v", got, err)
	}
}
