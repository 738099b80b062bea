package portal

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Credential checks from one client address are bounded: while two run, a third is
// refused at once (and nothing reaches the daemon); every check goes out on the portal
// channel with the client's address, so the daemon throttles instead of locking out.
func TestSignInsPerAddress(t *testing.T) {
	e := newEnv(t, true)
	e.fake.loginGate = make(chan struct{})
	e.fake.loginEntered = make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, code := range []string{"234567", "345678"} {
		b := e.browser()
		csrf := csrfOf(t, b.get("/signin").body)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.post("/signin", signinForm(csrf, "alice", code), nil)
		}()
	}
	<-e.fake.loginEntered
	<-e.fake.loginEntered
	b := e.browser()
	r := b.post("/signin", signinForm(csrfOf(t, b.get("/signin").body), "alice", fakeCode), nil)
	wantStatus(t, "a third sign-in from the same address", r, http.StatusTooManyRequests)
	if !strings.Contains(r.body, "from your address are still running") {
		t.Fatalf("no explanation:\n%s", r.body)
	}
	if n := e.fake.count("Login"); n != 0 {
		t.Fatalf("%d logins reached the daemon while the two were held", n)
	}
	close(e.fake.loginGate)
	wg.Wait()
	for _, c := range e.fake.callsOf("Login") {
		if !c.Caller.Portal() || c.Caller.Remote != "127.0.0.1" {
			t.Fatalf("Login went out as %+v, want the portal channel from 127.0.0.1", c.Caller)
		}
	}
}

// tricklingBody sends a few bytes, then one byte every tick, until stop is closed.
type tricklingBody struct {
	sent int
	tick time.Duration
	stop chan struct{}
}

func (b *tricklingBody) Read(p []byte) (int, error) {
	if b.sent >= 4 {
		select {
		case <-b.stop:
			return 0, io.ErrUnexpectedEOF
		case <-time.After(b.tick):
		}
	}
	p[0] = 'x'
	b.sent++
	return 1, nil
}

// Four users whose uploads trickle in (a byte every 100 ms) hold no write slot while they
// wait for the network: a fifth user's upload goes through while they are still sending.
func TestTricklingUploadsLeaveSlotsFree(t *testing.T) {
	e := newEnv(t, true)
	e.fake.mu.Lock()
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("user%d", i)
		e.fake.users[name] = fakeUser{name: name, uid: 2000 + i}
	}
	e.fake.mu.Unlock()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for i := 1; i <= 4; i++ {
		b := e.browser()
		csrf := b.signIn(fmt.Sprintf("user%d", i), fakeCode)
		loc := tusCreate(t, b, csrf, "slow.bin", 1<<20)
		req, err := http.NewRequest(http.MethodPatch, loc, &tricklingBody{tick: 100 * time.Millisecond, stop: stop})
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 1 << 20
		for k, vs := range tusHeaders(csrf, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0") {
			req.Header[k] = vs
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := b.c.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	// Wait until all four are being received.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for i := 1; i <= 4; i++ {
			if e.srv.uploads.receiving.Held(2000+i) == 1 {
				n++
			}
		}
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d trickling uploads started", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fifth := e.browser()
	csrf := fifth.signIn("user5", fakeCode)
	data := make([]byte, 3<<20)
	rand.Read(data)
	loc := tusCreate(t, fifth, csrf, "fast.bin", len(data))
	done := make(chan result, 1)
	go func() { done <- tusPatch(fifth, loc, csrf, 0, string(data)) }()
	select {
	case r := <-done:
		wantStatus(t, "the fifth user's upload", r, http.StatusNoContent)
	case <-time.After(30 * time.Second):
		t.Fatal("the fifth user's upload is stuck behind four trickling ones")
	}
	got, ok := e.fake.finished("fast.bin")
	if !ok || !bytes.Equal(got, data) {
		t.Fatal("the fifth user's file did not arrive whole")
	}
	// The trickling ones are still going, and hold no slot between their bytes.
	for i := 1; i <= 4; i++ {
		if e.srv.uploads.receiving.Held(2000+i) != 1 {
			t.Fatalf("user%d's upload is no longer being received", i)
		}
	}
}

// One user's chunks are received two at a time; a third waits its turn (it is not refused)
// and completes once one is done.
func TestReceivingPerUser(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	csrf := b.signIn("alice", fakeCode)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < maxReceiving; i++ {
		loc := tusCreate(t, b, csrf, fmt.Sprintf("slow%d.bin", i), 1<<20)
		req, _ := http.NewRequest(http.MethodPatch, loc, &tricklingBody{tick: 50 * time.Millisecond, stop: stop})
		req.ContentLength = 1 << 20
		for k, vs := range tusHeaders(csrf, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0") {
			req.Header[k] = vs
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := b.c.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.srv.uploads.receiving.Held(1001) < maxReceiving {
		if time.Now().After(deadline) {
			t.Fatal("the trickling uploads did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	loc := tusCreate(t, b, csrf, "third.bin", 5)
	done := make(chan result, 1)
	go func() { done <- tusPatch(b, loc, csrf, 0, "hello") }()
	select {
	case r := <-done:
		t.Fatalf("a third chunk of one user was taken in while two were received: %d", r.status)
	case <-time.After(300 * time.Millisecond):
	}
	close(stop)
	wg.Wait()
	select {
	case r := <-done:
		wantStatus(t, "the third chunk once the others ended", r, http.StatusNoContent)
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting chunk never got its turn")
	}
	if got, ok := e.fake.finished("third.bin"); !ok || string(got) != "hello" {
		t.Fatalf("third.bin: %q %v", got, ok)
	}
}
