package store

import (
	"context"
	"errors"

	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dsh/audit"
	"dsh/kv"
	"dsh/vault"
)

var fastKDF = vault.KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

const testPass = "correct horse battery staple"

var ctx = context.Background()

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := Init(dir, []byte(testPass), fastKDF, quiet()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// session unseals, runs fn, checkpoints as a seal does and closes.
func session(t *testing.T, dir string, fn func(p *Parts)) {
	t.Helper()
	p, err := Unseal(dir, []byte(testPass), Options{Log: quiet()})
	if err != nil {
		t.Fatalf("unseal: %v", err)
	}
	if err := p.Checkpoint(ctx, "unseal"); err != nil {
		t.Fatal(err)
	}
	if fn != nil {
		fn(p)
	}
	if err := p.Checkpoint(ctx, "seal"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func set(t *testing.T, p *Parts, key, value string) {
	t.Helper()
	if err := p.KV.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte(key), []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

// snapshot copies part of a data folder aside, as a backup or a disk image would.
func snapshot(t *testing.T, dir, part string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), part)
	if out, err := exec.Command("cp", "-a", filepath.Join(dir, part), dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	return dst
}

// restore puts a snapshot back in place of the part.
func restore(t *testing.T, dir, part, snap string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(dir, part)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", snap, filepath.Join(dir, part)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
}

func wantRollback(t *testing.T, dir, why string) {
	t.Helper()
	told := ""
	p, err := Unseal(dir, []byte(testPass), Options{Log: quiet(), OnIntegrity: func(class string) { told = class }})
	if err == nil {
		p.Close()
		t.Fatalf("unseal accepted a store whose parts disagree; want %q", why)
	}
	if !errors.Is(err, ErrRollback) || !strings.Contains(err.Error(), why) {
		t.Fatalf("unseal: %v; want ErrRollback saying %q", err, why)
	}
	if told == "" {
		t.Error("the refusal was not reported to OnIntegrity")
	}
	// The refusal is in the audit log.
	key, err := AuditKey(dir, []byte(testPass))
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	found := false
	if err := audit.Read(filepath.Join(dir, AuditDir), &key, time.Time{}, func(r audit.Record) error {
		found = found || r.Action == "store.integrity" && r.Result == "refused" && strings.Contains(r.Detail, why)
		return nil
	}); err != nil && !errors.Is(err, audit.ErrBroken) {
		t.Fatal(err)
	}
	if !found {
		t.Error("no store.integrity record of the refused unseal")
	}
}

func TestEpochAgreesAcrossSessions(t *testing.T) {
	dir := newStore(t)
	for range 3 {
		session(t, dir, func(p *Parts) { set(t, p, "acl/x", "1") })
	}
	p, err := Unseal(dir, []byte(testPass), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// init 1, then two per session.
	if got := p.Epoch(); got != 7 {
		t.Errorf("epoch %d after init and three sessions, want 7", got)
	}
}

func TestMetadataRolledBack(t *testing.T) {
	dir := newStore(t)
	session(t, dir, func(p *Parts) { set(t, p, "acl/member/s1/bob", "rw") })
	old := snapshot(t, dir, MetaDir)
	session(t, dir, func(p *Parts) {
		if err := p.KV.Update(ctx, func(tx kv.Txn) error { return tx.Delete([]byte("acl/member/s1/bob")) }); err != nil {
			t.Fatal(err)
		}
	})
	restore(t, dir, MetaDir, old)
	wantRollback(t, dir, "the metadata is older than the audit log")
}

// A copy taken in the middle of a session, put back after a change in the same session:
// the change's checkpoint (the daemon makes one after every membership change) catches it.
func TestMetadataRolledBackWithinSession(t *testing.T) {
	dir := newStore(t)
	p, err := Unseal(dir, []byte(testPass), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Checkpoint(ctx, "unseal"); err != nil {
		t.Fatal(err)
	}
	set(t, p, "acl/member/s1/bob", "rw")
	// A copy of meta/ as it is on disk now, while open (Badger's log holds the commits).
	old := snapshot(t, dir, MetaDir)
	set(t, p, "acl/member/s1/bob", "") // the removal
	if err := p.Checkpoint(ctx, "acl"); err != nil {
		t.Fatal(err)
	}
	// A crash: nothing closes cleanly (the audit log and Badger are simply dropped).
	p.Audit.Close()
	p.KV.Close()
	restore(t, dir, MetaDir, old)
	wantRollback(t, dir, "the metadata is older than the audit log")
}

func TestAuditRolledBack(t *testing.T) {
	dir := newStore(t)
	old := snapshot(t, dir, AuditDir)
	session(t, dir, nil)
	restore(t, dir, AuditDir, old)
	wantRollback(t, dir, "the audit log is older than the metadata")
}

func TestAuditTailCut(t *testing.T) {
	dir := newStore(t)
	var size int64
	p, err := Unseal(dir, []byte(testPass), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Checkpoint(ctx, "unseal"); err != nil {
		t.Fatal(err)
	}
	size = p.Audit.Stats().Size
	for i := range 5 {
		if _, err := p.Audit.Append(ctx, audit.Entry{UID: 1, Action: "fs.open", Object: "S:s1/f" + string(rune('a'+i)), Result: "ok"}, audit.Durable); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.NoteAuditHead(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.KV.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// A crash, then the log cut back to before the five records.
	p.Audit.Close()
	p.KV.Close()
	os.Remove(filepath.Join(dir, AuditDir, "audit.head"))
	if err := os.Truncate(filepath.Join(dir, AuditDir, "audit.log"), size); err != nil {
		t.Fatal(err)
	}
	wantRollback(t, dir, "the audit log does not hold what the metadata saw it reach")
}

func TestBlobsRolledBack(t *testing.T) {
	dir := newStore(t)
	old := snapshot(t, dir, BlobDir)
	session(t, dir, nil)
	restore(t, dir, BlobDir, old)
	wantRollback(t, dir, "the blob store is older than the metadata")

	dir = newStore(t)
	session(t, dir, nil)
	oldMeta, oldAudit := snapshot(t, dir, MetaDir), snapshot(t, dir, AuditDir)
	session(t, dir, nil)
	restore(t, dir, MetaDir, oldMeta)
	restore(t, dir, AuditDir, oldAudit)
	wantRollback(t, dir, "the metadata is older than the blob store")
}

func TestEpochRecordMissing(t *testing.T) {
	dir := newStore(t)
	session(t, dir, func(p *Parts) {
		if err := p.KV.Update(ctx, func(tx kv.Txn) error { return tx.Delete([]byte(epochRecordKey)) }); err != nil {
			t.Fatal(err)
		}
	})
	// The seal's checkpoint wrote it again: a removal must happen behind the daemon's back.
	p, err := Unseal(dir, []byte(testPass), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.KV.Update(ctx, func(tx kv.Txn) error { return tx.Delete([]byte(epochRecordKey)) }); err != nil {
		t.Fatal(err)
	}
	p.Close()
	wantRollback(t, dir, "the metadata has no epoch record")

	dir = newStore(t)
	os.Remove(filepath.Join(dir, BlobDir, blobEpochFile))
	wantRollback(t, dir, "the blob store has no epoch file")
}

// A crash in the middle of a checkpoint leaves the earlier parts one epoch ahead, which
// unseal accepts, and the next checkpoint brings all three together again.
func TestCheckpointInterruptedByCrash(t *testing.T) {
	for _, stop := range []string{"after blobs", "after meta"} {
		t.Run(stop, func(t *testing.T) {
			dir := newStore(t)
			p, err := Unseal(dir, []byte(testPass), Options{Log: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			e := p.Epoch()
			if err := writeBlobEpoch(p.epoch.blobDir, &p.epoch.key, e+1); err != nil {
				t.Fatal(err)
			}
			if stop == "after meta" {
				if err := p.KV.Update(ctx, func(tx kv.Txn) error {
					return tx.Set([]byte(epochRecordKey), epochRecord{epoch: e + 1, audit: p.Audit.Stats().Synced}.encode())
				}); err != nil {
					t.Fatal(err)
				}
			}
			p.Audit.Close()
			p.KV.Close()
			session(t, dir, nil)
			session(t, dir, nil)
		})
	}
}

// A value changed on disk is refused, counted and audited, not used.
func TestSealedMetadataReported(t *testing.T) {
	dir := newStore(t)
	session(t, dir, func(p *Parts) { set(t, p, "acl/member/s1/bob", "rw") })
	p, err := Unseal(dir, []byte(testPass), Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var told []string
	p.OnIntegrity = func(class string) { told = append(told, class) }
	inner := p.sealed.Inner()
	// The sealed value of another record, put under bob's membership.
	var other []byte
	if err := inner.View(ctx, func(tx kv.Txn) (err error) { other, err = tx.Get([]byte(epochRecordKey)); return err }); err != nil {
		t.Fatal(err)
	}
	if err := inner.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("acl/member/s1/bob"), other) }); err != nil {
		t.Fatal(err)
	}
	err = p.KV.View(ctx, func(tx kv.Txn) error { _, err := tx.Get([]byte("acl/member/s1/bob")); return err })
	if !errors.Is(err, kv.ErrIntegrity) {
		t.Fatalf("a moved value read as %v", err)
	}
	if len(told) != 1 || told[0] != "acl/member/" {
		t.Errorf("OnIntegrity told %q", told)
	}
	st := p.Audit.Stats().Seq
	p.Close()
	key, _ := AuditKey(dir, []byte(testPass))
	defer key.Wipe()
	var last audit.Record
	if err := audit.Read(filepath.Join(dir, AuditDir), &key, time.Time{}, func(r audit.Record) error {
		if r.Seq <= st {
			last = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if last.Action != "store.integrity" || last.Object != "acl/member/" || strings.Contains(last.Detail+last.Object, "bob") {
		t.Errorf("last record %+v; want a store.integrity record naming only the class", last)
	}
}
