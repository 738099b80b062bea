package scan_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dsh/scan"
	"dsh/scan/clamdtest"
)

// startClamd runs a real clamd with the test database; under CI a missing clamd fails.
func startClamd(t *testing.T, opts clamdtest.Options) *clamdtest.Clamd {
	t.Helper()
	c, err := clamdtest.Start(context.Background(), t.TempDir(), opts)
	if err != nil {
		if os.Getenv("CI") == "true" || !strings.Contains(err.Error(), "not installed") {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func scanBytes(t *testing.T, c *scan.Clamd, b []byte) (scan.Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.Scan(ctx, int64(len(b)), bytes.NewReader(b))
}

func TestClamdVerdicts(t *testing.T) {
	d := startClamd(t, clamdtest.Options{StreamMaxLength: 2 << 20, MaxFileSize: 2 << 20})
	c := scan.NewClamd(d.Socket, scan.ClamdOptions{MaxSize: 3 << 20})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Version(context.Background()); err != nil || !strings.HasPrefix(v, "ClamAV ") {
		t.Fatalf("version %q, %v", v, err)
	}

	clean := make([]byte, 1<<20+17)
	rand.Read(clean)
	if v, err := scanBytes(t, c, clean); err != nil || v.Result != scan.Clean {
		t.Fatalf("random bytes: %+v, %v", v, err)
	}
	if v, err := scanBytes(t, c, nil); err != nil || v.Result != scan.Clean {
		t.Fatalf("empty file: %+v, %v", v, err)
	}
	// The sample anywhere in a file, across a chunk boundary too.
	for _, at := range []int{0, 256<<10 - 5, len(clean) - 100} {
		b := append([]byte(nil), clean...)
		copy(b[at:], clamdtest.Sample())
		v, err := scanBytes(t, c, b)
		if err != nil || v.Result != scan.Infected || v.Signature != clamdtest.Found {
			t.Fatalf("sample at %d: %+v, %v", at, v, err)
		}
	}
	// Over clamd's StreamMaxLength (but under this client's limit): clamd stops reading,
	// and the file is held, never passed.
	big := make([]byte, 2<<20+1)
	v, err := scanBytes(t, c, big)
	if err != nil || v.Result != scan.Held {
		t.Fatalf("over StreamMaxLength: %+v, %v", v, err)
	}
	// Over this client's limit: held without a byte sent.
	small := scan.NewClamd(d.Socket, scan.ClamdOptions{MaxSize: 1000})
	v, err = small.Scan(context.Background(), 1001, errReader{})
	if err != nil || v.Result != scan.Held || !strings.Contains(v.Reason, "over the scanner's limit") {
		t.Fatalf("over MaxSize: %+v, %v", v, err)
	}
	// A reader that gives more than it announced is held too once past the limit.
	v, err = small.Scan(context.Background(), 10, bytes.NewReader(make([]byte, 5000)))
	if err != nil || v.Result != scan.Held {
		t.Fatalf("longer than announced: %+v, %v", v, err)
	}
	// A reader that gives fewer bytes than announced is an error, not clean.
	if _, err := c.Scan(context.Background(), 100, bytes.NewReader(make([]byte, 50))); !errors.Is(err, scan.ErrFailed) {
		t.Fatalf("short reader: %v", err)
	}
	// An encrypted archive cannot be looked into: AlertEncrypted makes clamd say so.
	v, err = scanBytes(t, c, encryptedZip(t))
	if err != nil || v.Result != scan.Held || !strings.HasPrefix(v.Signature, "Heuristics.Encrypted") {
		t.Fatalf("encrypted zip: %+v, %v", v, err)
	}
}

// A stopped clamd makes scans wait, then fail; a clamd that comes back is found again.
func TestClamdStopped(t *testing.T) {
	d := startClamd(t, clamdtest.Options{})
	c := scan.NewClamd(d.Socket, scan.ClamdOptions{Wait: time.Second})
	d.Stop()
	start := time.Now()
	_, err := scanBytes(t, c, []byte("hello"))
	if !errors.Is(err, scan.ErrUnavailable) {
		t.Fatalf("scan with clamd stopped: %v", err)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("the scan did not wait for clamd (%v)", time.Since(start))
	}
	d2, err := clamdtest.Start(context.Background(), d.Dir, clamdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Stop()
	if v, err := scanBytes(t, c, []byte("hello")); err != nil || v.Result != scan.Clean {
		t.Fatalf("after restart: %+v, %v", v, err)
	}
}

// A hostile or broken peer on the socket: silence, garbage, a verdict cut off. None of them
// is ever taken for clean.
func TestClamdBadPeer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply string // "" = never answer
		want  error
	}{
		{"silent", "", scan.ErrUnavailable},
		{"garbage", "hello there\x00", scan.ErrFailed},
		{"error", "stream: Can't allocate memory ERROR\x00", scan.ErrFailed},
		{"ok lookalike", "stream: OK FOUND\x00", nil},
		{"empty finding", "stream:  FOUND\x00", scan.ErrFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "fake.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				// Read the whole stream, then answer.
				var hdr [4]byte
				cmd := make([]byte, len("zINSTREAM\x00"))
				if _, err := conn.Read(cmd); err != nil {
					return
				}
				for {
					if _, err := readFull(conn, hdr[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint32(hdr[:])
					if n == 0 {
						break
					}
					if _, err := readFull(conn, make([]byte, n)); err != nil {
						return
					}
				}
				if tc.reply == "" {
					time.Sleep(3 * time.Second)
					return
				}
				conn.Write([]byte(tc.reply))
			}()
			c := scan.NewClamd(sock, scan.ClamdOptions{Idle: 500 * time.Millisecond})
			v, err := c.Scan(context.Background(), 5, strings.NewReader("hello"))
			if tc.want == nil {
				// "OK FOUND" is a finding named "OK", not a clean file.
				if err != nil || v.Result != scan.Infected {
					t.Fatalf("got %+v, %v", v, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || v.Result == scan.Clean {
				t.Fatalf("got %+v, %v; want %v", v, err, tc.want)
			}
		})
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

// encryptedZip makes a zip archive whose one entry is marked encrypted (general purpose
// flag bit 0), as a password-protected archive is.
func encryptedZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "secret.txt", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("x"), 100))
	zw.Close()
	b := buf.Bytes()
	for _, sig := range [][]byte{{'P', 'K', 3, 4}, {'P', 'K', 1, 2}} {
		i := bytes.Index(b, sig)
		if i < 0 {
			t.Fatal("zip header not found")
		}
		off := i + 6 // local header: flags at 6
		if sig[2] == 1 {
			off = i + 8 // central directory: flags at 8
		}
		b[off] |= 1
	}
	return b
}
