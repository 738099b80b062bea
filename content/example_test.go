package content_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"dsh/blob"
	"dsh/content"
	"dsh/vault"
)

// A file's life: created, written, flushed into the metadata (here a variable), and
// opened again from what the metadata recorded.
func Example() {
	dir, err := os.MkdirTemp("", "content-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	blobs, err := blob.OpenLocal(dir)
	if err != nil {
		log.Fatal(err)
	}
	store := content.New(blobs, content.Options{})
	shareKey, _ := vault.NewKey()
	defer shareKey.Wipe()

	id, wrapped, err := store.NewFile("projects", &shareKey)
	if err != nil {
		log.Fatal(err)
	}
	var recorded content.Staged // what the metadata layer would store
	commit := func(ctx context.Context, st content.Staged) error {
		recorded = st
		return nil
	}
	ctx := context.Background()
	f, err := store.Open("projects", &shareKey, id, wrapped, 0, nil, commit)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := f.WriteAt(ctx, []byte("hello, world"), 0); err != nil {
		log.Fatal(err)
	}
	if err := f.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	f.Close()

	g, err := store.Open("projects", &shareKey, id, wrapped, recorded.Size, recorded.Segments, commit)
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	p := make([]byte, 100)
	n, err := g.ReadAt(ctx, p, 7)
	fmt.Printf("%d segment(s), read %q, %v\n", len(recorded.Segments), p[:n], err)
	// Output: 1 segment(s), read "world", <nil>
}
