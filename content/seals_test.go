package content

import (
	"context"
	"math/rand/v2"
	"testing"

	"dsh/vault"
)

// Each flush counts the chunks it sealed; a file over the budget moves to a new key and file
// ID when next opened: every segment sealed again, one commit, the old objects dropped.
func TestSealCountAndRollover(t *testing.T) {
	e := newEnv(t, 4, 0)
	e.store.sealBudget = 20
	f := e.open()
	r := rand.New(rand.NewPCG(5, 6))
	model := randBytes(r, 9*4*vault.ChunkSize+100) // 10 segments of 4 chunks
	mustWrite(t, f, model, 0)
	mustFlush(t, f)
	// 36 full chunks and one of 100 bytes, each sealed as vault.BlockSize pieces.
	whole := 36*uint64(vault.ChunkSize/vault.BlockSize) + 1
	if got := e.meta.current().Seals; got != whole {
		t.Fatalf("a file of 37 chunks written whole counts %d seals, want %d", got, whole)
	}
	mustWrite(t, f, []byte("x"), 5)
	copy(model[5:], "x")
	mustFlush(t, f)
	if got := e.meta.current().Seals; got != whole+1 {
		t.Fatalf("a one-block patch then: %d seals, want %d", got, whole+1)
	}
	f.Close()
	before := e.meta.current()

	// Opened again, over the budget: it moves.
	st := e.meta.current()
	g, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, st.Segments, e.meta.commit, WithSeals(st.Seals))
	if err != nil {
		t.Fatal(err)
	}
	after := e.meta.current()
	if after.FileID == before.FileID || after.FileID == (vault.FileID{}) || after.Key == before.Key {
		t.Fatal("the file did not move to a new file ID and key")
	}
	if after.Seals != whole || len(after.Dropped) != 11 {
		t.Fatalf("after the move: %d seals, %d objects dropped", after.Seals, len(after.Dropped))
	}
	equalOrReport(t, "after the move", readAll(t, g, 50_000), model)
	// The file goes on under its new key, and reopens with it.
	mustWrite(t, g, []byte("yz"), 70_000)
	copy(model[70_000:], "yz")
	mustFlush(t, g)
	g.Close()
	st = e.meta.current()
	h, err := e.store.Open(e.share, &e.key, st.FileID, st.Key, st.Size, st.Segments, e.meta.commit, WithSeals(st.Seals))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	equalOrReport(t, "reopened under the new key", readAll(t, h, 50_000), model)
	// The old key no longer opens it.
	if _, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, st.Segments, e.meta.commit); err == nil {
		if _, err := readAllErr(e, st); err == nil {
			t.Fatal("the old file ID and key still read the moved file")
		}
	}
	_ = context.Background()
}

// readAllErr reads the file of state st with the env's original identity.
func readAllErr(e *env, st Staged) ([]byte, error) {
	f, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, st.Segments, e.meta.commit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, st.Size)
	_, err = f.ReadAt(context.Background(), buf, 0)
	return buf, err
}
