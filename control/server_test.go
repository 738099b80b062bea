package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeDaemon records what it was asked; it applies the operator rule like the real one.
type fakeDaemon struct {
	Accounts // account endpoints are exercised end to end in tests/; unused here
	Tokens   // only Login is faked here; the rest is exercised end to end in tests/
	Arrivals // exercised end to end in tests/
	SMB      // exercised end to end in tests/ (with Samba)
	Airlock  // exercised end to end in tests/airlock_test.go
	Hardware // only ImportTokens is faked here; the rest is exercised end to end in tests/
	loginPW  []byte
	// importKey and importRead are what the last import got: the key, and the body's size.
	importKey  []byte
	importRead int64
	importErr  error
	mu         sync.Mutex
	sealed     bool
	lastPass   string
	calls      []string
}

func (f *fakeDaemon) note(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }

// ImportTokens keeps the key slice it was given (to see it wiped after the call) and reads
// the body to its end.
func (f *fakeDaemon) ImportTokens(ctx context.Context, c Caller, format, name string, key []byte, body io.Reader) (ImportResponse, error) {
	n, err := io.Copy(io.Discard, body)
	f.mu.Lock()
	f.importKey, f.importRead, f.importErr = key, n, err
	f.mu.Unlock()
	if err != nil {
		return ImportResponse{}, err
	}
	return ImportResponse{Imported: []string{format + ":" + name}}, nil
}

func (f *fakeDaemon) Status(ctx context.Context, c Caller) (StatusResponse, error) {
	f.note(fmt.Sprintf("status uid=%d", c.UID))
	if !c.IsRoot() {
		return StatusResponse{}, fmt.Errorf("%w: operator only", ErrForbidden)
	}
	return StatusResponse{Sealed: f.sealed, Version: "test"}, nil
}

func (f *fakeDaemon) Unseal(ctx context.Context, c Caller, pass []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPass = string(pass)
	if string(pass) != "right" {
		return fmt.Errorf("%w: wrong unseal passphrase", ErrUnauthorized)
	}
	f.sealed = false
	return nil
}

// Login keeps the password slice it was given, so the test can see it wiped afterwards, and
// answers a locked account for user "locked".
func (f *fakeDaemon) Login(ctx context.Context, c Caller, user string, password, pin []byte, code, emergency string) (SessionView, error) {
	f.mu.Lock()
	f.loginPW = password
	f.mu.Unlock()
	if user == "locked" {
		return SessionView{}, fmt.Errorf("%w: account is locked until 12:00", ErrLocked)
	}
	if string(password) != "pw" || string(pin) != "1234" || code != "123456" {
		return SessionView{}, fmt.Errorf("%w: wrong user ID, password, PIN or code", ErrUnauthorized)
	}
	return SessionView{Active: true, UID: c.UID, User: user}, nil
}

func (f *fakeDaemon) Seal(ctx context.Context, c Caller) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sealed {
		return fmt.Errorf("%w: already sealed", ErrConflict)
	}
	f.sealed = true
	return nil
}

func (f *fakeDaemon) Rekey(ctx context.Context, c Caller, pass, next []byte) error {
	if string(pass) != "pw" {
		return fmt.Errorf("%w: wrong passphrase", ErrUnauthorized)
	}
	return nil
}

func (f *fakeDaemon) AuditVerify(ctx context.Context, c Caller) (AuditVerifyResponse, error) {
	return AuditVerifyResponse{OK: true, Records: 3}, nil
}

func (f *fakeDaemon) AuditShow(ctx context.Context, c Caller, q AuditQuery, emit func(AuditRecord) error) error {
	recs := []AuditRecord{{Seq: 1, Action: "a"}, {Seq: 2, Action: "b", Object: "x\ny"}, {Seq: 3, Action: "c"}}
	if q.User == "fail-first" {
		return fmt.Errorf("%w: no such user", ErrInvalid)
	}
	for _, r := range recs {
		if !q.Since.IsZero() && r.Seq < 2 || q.Action != "" && r.Action != q.Action {
			continue
		}
		if q.User == "fail-later" && r.Seq == 2 {
			return errors.New("disk read error")
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	return nil
}

func startServer(t *testing.T) (*fakeDaemon, string) {
	t.Helper()
	d := &fakeDaemon{sealed: true}
	sock := filepath.Join(t.TempDir(), "sub", "control.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(d, slog.New(slog.NewTextHandler(io.Discard, nil)), ServerOptions{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind after shutdown: %v", err)
		}
	})
	return d, sock
}

func TestClientServerRoundTrip(t *testing.T) {
	d, sock := startServer(t)
	c := NewClient(sock)
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || !st.Sealed || st.Version != "test" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	err = c.Unseal(ctx, []byte("wrong"))
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "wrong unseal passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if err := c.Unseal(ctx, []byte("right")); err != nil {
		t.Fatal(err)
	}
	if d.lastPass != "right" {
		t.Fatalf("daemon got passphrase %q", d.lastPass)
	}
	if err := c.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Seal(ctx); !errors.Is(err, ErrConflict) {
		t.Fatalf("second seal: %v", err)
	}
	v, err := c.AuditVerify(ctx)
	if err != nil || !v.OK || v.Records != 3 {
		t.Fatalf("verify = %+v, %v", v, err)
	}
	show := func(q AuditQuery) ([]AuditRecord, error) {
		var recs []AuditRecord
		err := c.AuditShow(ctx, q, func(r AuditRecord) error { recs = append(recs, r); return nil })
		return recs, err
	}
	recs, err := show(AuditQuery{Since: time.Now()})
	if err != nil || len(recs) != 2 || recs[0].Seq != 2 || recs[0].Object != "x\ny" {
		t.Fatalf("show since = %+v, %v", recs, err)
	}
	if recs, err = show(AuditQuery{Action: "c"}); err != nil || len(recs) != 1 || recs[0].Seq != 3 {
		t.Fatalf("show action = %+v, %v", recs, err)
	}
	// An error before the first record is an ordinary error answer; one after it ends the
	// stream with an error line, and the client reports it after the records it got.
	if _, err = show(AuditQuery{User: "fail-first"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("show failing first: %v", err)
	}
	recs, err = show(AuditQuery{User: "fail-later"})
	if len(recs) != 1 || err == nil || !strings.Contains(err.Error(), "disk read error") {
		t.Fatalf("show failing later: %+v, %v", recs, err)
	}
}

func TestSocketMode(t *testing.T) {
	_, sock := startServer(t)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want socket 0666", fi.Mode())
	}
}

func TestListenRefusesLiveSocketAndReplacesStale(t *testing.T) {
	_, sock := startServer(t)
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another dsh daemon") {
		t.Fatalf("second listen on a live socket: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: stale}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd) // bound but never listening, as after a crash
	l, err := Listen(stale)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l.Close()
	notSock := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notSock, []byte("x"), 0o600)
	if _, err := Listen(notSock); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
}

// raw sends a request straight to the socket, as curl --unix-socket would.
func raw(t *testing.T, sock, method, path, body string) (int, ErrorResponse, http.Header) {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(method, "http://dsh"+path, strings.NewReader(body))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e ErrorResponse
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(data, &e); err != nil || e.Error == "" {
			t.Fatalf("%s %s: status %d, body %q is not a JSON error", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, e, resp.Header
}

func TestBadRequestsGetJSONErrors(t *testing.T) {
	d, sock := startServer(t)
	big := `{"passphrase":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"malformed json", "POST", PathUnseal, `{"passphrase":`, 400, "malformed JSON"},
		{"not an object", "POST", PathUnseal, `[1,2]`, 400, "malformed JSON"},
		{"unknown field", "POST", PathUnseal, `{"passphrase":"x","admin":true}`, 400, `unknown field "admin"`},
		{"wrong type", "POST", PathUnseal, `{"passphrase":5}`, 400, "must be string"},
		{"trailing data", "POST", PathUnseal, `{"passphrase":"x"} {}`, 400, "unexpected data"},
		{"empty body", "POST", PathUnseal, ``, 400, "empty"},
		{"oversized", "POST", PathUnseal, big, 413, "larger than"},
		{"body where none is taken", "POST", PathSeal, `{"x":1}`, 400, "no request body"},
		{"wrong method", "GET", PathUnseal, ``, 405, "takes POST"},
		{"wrong method delete", "DELETE", PathStatus, ``, 405, "takes GET"},
		{"unknown path", "GET", "/v1/nope", ``, 404, "no such endpoint"},
		{"bad since", "GET", PathAuditShow + "?since=yesterday", ``, 400, "RFC 3339"},
		{"bad until", "GET", PathAuditShow + "?until=3", ``, 400, "RFC 3339"},
		{"bad limit", "GET", PathAuditShow + "?limit=-1", ``, 400, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, e, hdr := raw(t, sock, c.method, c.path, c.body)
			if status != c.status || !strings.Contains(e.Error, c.contains) {
				t.Fatalf("got %d %q, want %d containing %q", status, e.Error, c.status, c.contains)
			}
			if status == 405 && hdr.Get("Allow") == "" {
				t.Fatal("405 without an Allow header")
			}
			if strings.Contains(e.Error, "aaaa") || strings.Contains(e.Error, `"x"`) {
				t.Fatalf("error echoes the request body: %q", e.Error)
			}
		})
	}
	if !d.sealed || d.lastPass != "" {
		t.Fatalf("a bad request reached the daemon: sealed=%v pass=%q", d.sealed, d.lastPass)
	}
}

func TestRootCallerIsSeenAsUID0(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to connect as another uid")
	}
	d, sock := startServer(t)
	// Other uids are covered end to end (tests/), where the real binary runs as them.
	if _, err := NewClient(sock).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(d.calls) == 0 || d.calls[len(d.calls)-1] != "status uid=0" {
		t.Fatalf("daemon saw %v", d.calls)
	}
}

func TestNoDaemon(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "is dsh serve running") {
		t.Fatalf("got %v", err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"passphrase":"x"}`))
	f.Add([]byte(`{"passphrase":"x"} x`))
	f.Add([]byte(`{"passphrase":1}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"a":{"b":[1,2,{"c":null}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req UnsealRequest
		err := DecodeJSON(body, &req)
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not marked invalid: %v", err)
		}
		if err == nil {
			// What decoded must re-encode and decode to the same value.
			again, _ := json.Marshal(req)
			var back UnsealRequest
			if err := DecodeJSON(again, &back); err != nil || back != req {
				t.Fatalf("round trip: %v %+v %+v", err, back, req)
			}
		}
	})
}

func TestListenRefusesAFolderOthersCanWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "open")
	os.Mkdir(dir, 0o777)
	os.Chmod(dir, 0o777)
	_, err := Listen(filepath.Join(dir, "control.sock"))
	if err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Fatalf("Listen in a 0777 folder: %v", err)
	}
}

// The login route hands the daemon the secrets, wipes its copies afterwards, and a locked
// account comes back to the client as ErrLocked with the daemon's message.
func TestLoginSecretsWipedAndLockedMapped(t *testing.T) {
	d, sock := startServer(t)
	cl := NewClient(sock)
	v, err := cl.Login(context.Background(), LoginRequest{User: "alice", Password: "pw", PIN: "1234", Code: "123456"})
	if err != nil || !v.Active || v.User != "alice" {
		t.Fatalf("login: %+v %v", v, err)
	}
	d.mu.Lock()
	pw := d.loginPW
	d.mu.Unlock()
	if len(pw) != 2 || pw[0] != 0 || pw[1] != 0 {
		t.Fatalf("password copy not wiped after the call: %q", pw)
	}
	_, err = cl.Login(context.Background(), LoginRequest{User: "alice", Password: "pw", PIN: "1234", Code: "000000"})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong code: %v", err)
	}
	_, err = cl.Login(context.Background(), LoginRequest{User: "locked", Password: "pw"})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "locked until") {
		t.Fatalf("locked: %v", err)
	}
	// A secret smuggled in an unknown field is refused before the daemon sees anything.
	_, err = cl.Login(context.Background(), LoginRequest{})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("empty login: %v", err)
	}
}

// TestImportKeyInHeaderAndBounded: the pre-shared key of a seed file travels in a header
// (never the URL), arrives decoded and is wiped after the call; a key that is not hex is
// refused; a body past MaxImportBytes is cut off.
func TestImportKeyInHeaderAndBounded(t *testing.T) {
	d, sock := startServer(t)
	c := NewClient(sock)
	ctx := context.Background()
	key := []byte{0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12}
	res, err := c.ImportTokens(ctx, "pskc", "vendor.xml", []byte("<KeyContainer/>"), key)
	if err != nil || len(res.Imported) != 1 || res.Imported[0] != "pskc:vendor.xml" {
		t.Fatalf("import: %+v, %v", res, err)
	}
	d.mu.Lock()
	got, n := d.importKey, d.importRead
	d.mu.Unlock()
	if n != int64(len("<KeyContainer/>")) || len(got) != len(key) {
		t.Fatalf("daemon read %d bytes with a %d-byte key", n, len(got))
	}
	for _, b := range got {
		if b != 0 {
			t.Fatal("the key was not wiped after the call")
		}
	}
	status, body := rawPost(t, sock, PathTokenImport, map[string]string{ImportKeyHeader: "not hex"}, strings.NewReader("x"))
	if status != http.StatusBadRequest || !strings.Contains(body, "hex") {
		t.Fatalf("a key that is not hex: %d %s", status, body)
	}
	_, err = c.ImportTokens(ctx, "csv", "big.csv", make([]byte, MaxImportBytes+1), nil)
	if StatusFor(err) != http.StatusRequestEntityTooLarge && !strings.Contains(fmt.Sprint(err), "too large") {
		t.Fatalf("a file past the bound: %v", err)
	}
}

// rawPost sends a POST with headers straight to the socket.
func rawPost(t *testing.T, sock, path string, hdr map[string]string, body io.Reader) (int, string) {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return net.Dial("unix", sock) }}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, "http://dsh"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
