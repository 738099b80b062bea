package content

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"dsh/blob"
	"dsh/vault"
)

// TestBudgetBoundsAllFiles: many files written at once, none reaching its own MaxDirty,
// together stay within the shared budget (plus the few chunks one write takes), because writers flush
// the largest holder; nothing written is lost.
func TestBudgetBoundsAllFiles(t *testing.T) {
	bs, err := blob.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	budget := NewBudget(8 * vault.ChunkSize)
	var envs []*env
	var files []*File
	for range 5 {
		e := newEnvOn(t, bs, 4, 1<<40)
		e.store.budget = budget
		// One Store per env as in the daemon's two trees, sharing the budget.
		envs = append(envs, e)
		files = append(files, e.open())
	}
	r := rand.New(rand.NewPCG(1, 2))
	models := make([][]byte, len(files))
	for i := range 400 {
		k := i % len(files)
		p := randBytes(r, vault.ChunkSize/2+r.IntN(vault.ChunkSize))
		off := int64(len(models[k]))
		mustWrite(t, files[k], p, off)
		models[k] = append(models[k], p...)
		if held := budget.Held(); held > budget.limit+4*vault.ChunkSize {
			t.Fatalf("write %d: %d bytes held, budget %d", i, held, budget.limit)
		}
	}
	for k, f := range files {
		mustFlush(t, f)
		equalOrReport(t, "file", readAll(t, f, 1<<20), models[k])
		g := envs[k].open()
		if !bytes.Equal(readAll(t, g, 1<<20), models[k]) {
			t.Fatalf("file %d reopened differs", k)
		}
		g.Close()
		f.Close()
	}
	if held := budget.Held(); held != 0 {
		t.Fatalf("%d bytes still held after every file closed", held)
	}
}
