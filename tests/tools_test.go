package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGroupSpecialFilesAndFallocate: what tools expect of a local disk beyond plain files:
// named pipes, unix sockets (git's credential cache daemon binds one), fallocate in the
// modes programs use, and names and paths as long as the kernel allows, each audited whole.
func TestGroupSpecialFilesAndFallocate(t *testing.T) {
	// Heavy and self-contained: runs beside the other parallel tests.
	t.Parallel()
	g := newGroupEnv(t)
	S := g.S + "/s1"

	// A FIFO pipeline.
	if got := g.shOK(t, uidAlice, "cd "+S+" && mkfifo p && stat -c %F p && (printf 'through the pipe' > p &) && cat p"); got != "fifo\nthrough the pipe" {
		t.Fatalf("fifo: %q", got)
	}
	// A unix socket bound in the share, then connected to.
	if got := g.probe(t, uidAlice, "unixsock", S+"/sock"); got != "ok through the socket" {
		t.Fatalf("unix socket: %q", got)
	}
	if got := g.shOK(t, uidErin, "stat -c %F "+S+"/sock"); got != "socket\n" {
		t.Fatalf("another member sees %q", got)
	}
	// git's credential cache: a daemon listening on a socket in a 0700 folder of the share.
	helper := "cache --socket " + S + "/gitsock/cred"
	g.shOK(t, uidAlice, "mkdir -m 700 "+S+"/gitsock && printf 'protocol=https\\nhost=example.org\\nusername=u\\npassword=pw\\n\\n' | git -c credential.helper='"+helper+"' credential approve")
	if got := g.shOK(t, uidAlice, "printf 'protocol=https\\nhost=example.org\\n\\n' | git -c credential.helper='"+helper+"' credential fill"); !strings.Contains(got, "password=pw") {
		t.Fatalf("git credential fill through the cache daemon: %q", got)
	}
	g.shOK(t, uidAlice, "git credential-cache --socket "+S+"/gitsock/cred exit")
	// Device nodes stay refused, as on a nodev mount (a member has no CAP_MKNOD anyway).
	g.shFails(t, uidAlice, "mknod "+S+"/null c 1 3", "Operation not permitted")
	// Outsiders see none of it.
	g.shFails(t, uidCarol, "stat "+S+"/p", "No such file or directory")

	// fallocate -l 1G, then a write at its end: 1 GiB long, one segment stored.
	before := blobBytes(t, g.data)
	g.shOK(t, uidAlice, "fallocate -l 1G "+S+"/big && printf END | dd of="+S+"/big bs=1 seek=1073741821 conv=notrunc status=none")
	if got := g.shOK(t, uidAlice, "stat -c %s "+S+"/big; tail -c 3 "+S+"/big"); got != "1073741824\nEND" {
		t.Fatalf("fallocated file: %q", got)
	}
	if grew := blobBytes(t, g.data) - before; grew > 64<<20 {
		t.Fatalf("a 1 GiB fallocated file with 3 bytes written stores %d bytes", grew)
	}
	// Punch a hole and zero a range in a file with content; other modes are EOPNOTSUPP.
	g.shOK(t, uidAlice, "head -c 300000 /dev/urandom > "+S+"/h && fallocate -p -o 1000 -l 2000 "+S+"/h && fallocate -z -o 100000 -l 5000 "+S+"/h")
	if got := g.shOK(t, uidErin, "stat -c %s "+S+"/h; dd if="+S+"/h bs=1000 skip=1 count=2 status=none | tr -d '\\0' | wc -c; dd if="+S+"/h bs=5000 skip=20 count=1 status=none | tr -d '\\0' | wc -c"); got != "300000\n0\n0\n" {
		t.Fatalf("punched and zeroed ranges: %q", got)
	}
	g.shFails(t, uidAlice, "fallocate -c -o 0 -l 65536 "+S+"/h", "not supported")
	g.shFails(t, uidRO, "fallocate -p -o 0 -l 10 "+S+"/h", "ermission denied")

	// Names of NAME_MAX bytes, nested until the path is near PATH_MAX; a create, a mkdir
	// and a rename there work and are audited with the whole path.
	name := strings.Repeat("n", 255)
	dir := S
	for len(dir)+256 < 4096-300 {
		dir += "/" + name
	}
	rel, _ := filepath.Rel(g.dir, dir)
	g.shOK(t, uidAlice, "mkdir -p "+rel+" && cd "+rel+" && echo deep > "+name+" && mkdir d"+strings.Repeat("x", 254)+" && mv "+name+" "+strings.Repeat("m", 255))
	if got := g.shOK(t, uidErin, "cd "+rel+" && cat "+strings.Repeat("m", 255)); got != "deep\n" {
		t.Fatalf("deep file reads %q", got)
	}
	audit := g.dsh(0, "", "audit", "show").ok(t).stdout
	inShare := strings.TrimPrefix(dir, g.S+"/")
	for _, want := range []string{
		`fs.create "group:` + inShare + "/" + name + `" ok`,
		`fs.mkdir "group:` + inShare + "/d" + strings.Repeat("x", 254) + `" ok`,
		`fs.rename "group:` + inShare + "/" + name + `" ok (to ` + inShare + "/" + strings.Repeat("m", 255) + ")",
		`fs.punch "group:s1/h" ok`,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %.120s...", want)
		}
	}
	if strings.Contains(g.serverLog(), "audit record not written") {
		t.Fatal("an audit record was refused")
	}
}

// blobBytes sums the sizes of the stored objects.
func blobBytes(t *testing.T, data string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(filepath.Join(data, "blobs"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
