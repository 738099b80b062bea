package fs

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"dsh/blob"
	"dsh/kv"
	"dsh/kv/kvtest"
)

// orderedBlobs records, for each Delete, how many syncs of the metadata came before it.
type orderedBlobs struct {
	blob.Store
	db      *kvtest.Counting
	deletes atomic.Int32
	early   atomic.Int32 // deletes with no sync since the test's mark
	mark    int32
}

func (o *orderedBlobs) Delete(ctx context.Context, id blob.ID) error {
	o.deletes.Add(1)
	if o.db.Syncs.Load()+o.db.Durable.Load() <= o.mark {
		o.early.Add(1)
	}
	return o.Store.Delete(ctx, id)
}

// Nothing is deleted before the commit that made it garbage is durable: the collector
// syncs the metadata before it deletes what the garbage list names.
func TestCollectorSyncsBeforeDeleting(t *testing.T) {
	db := &kvtest.Counting{Store: kv.NewMem()}
	be, root, shareKey := fileBackend(t, db)
	ob := &orderedBlobs{Store: be.Blobs, db: db}
	be.Blobs = ob
	a := createFile(t, be, root, shareKey, "f")
	of, err := openFileOf(be, shareKey, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer of.f.Close()
	big := make([]byte, 2<<20) // more than a patch: each flush rewrites the segment whole
	for i := range 3 {
		big[0] = byte(i)
		if _, err := of.f.WriteAt(bg, big, 0); err != nil {
			t.Fatal(err)
		}
		if err := of.f.Flush(bg); err != nil { // each flush drops the object before
			t.Fatal(err)
		}
	}
	ob.mark = db.Syncs.Load() + db.Durable.Load()
	g := New(Options{Log: slog.New(slog.DiscardHandler), GCInterval: time.Hour})
	if err := g.collectGarbage(bg, be); err != nil {
		t.Fatal(err)
	}
	if ob.deletes.Load() != 2 {
		t.Fatalf("%d objects deleted, want the 2 replaced ones", ob.deletes.Load())
	}
	if ob.early.Load() != 0 {
		t.Fatalf("%d objects deleted before the metadata was synced", ob.early.Load())
	}
}
