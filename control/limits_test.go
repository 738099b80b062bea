package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"dsh/metrics"
)

// gateDaemon holds every status request until release is closed, and reads upload bodies
// to the end, reporting how each ended.
type gateDaemon struct {
	fakeDaemon
	release  chan struct{}
	entered  chan struct{}
	uploaded chan error
}

func (g *gateDaemon) Status(ctx context.Context, c Caller) (StatusResponse, error) {
	g.entered <- struct{}{}
	<-g.release
	return StatusResponse{Version: "test"}, nil
}

func (g *gateDaemon) Upload(ctx context.Context, c Caller, name string, body io.Reader) (ArrivalView, error) {
	g.entered <- struct{}{}
	_, err := io.Copy(io.Discard, body)
	g.uploaded <- err
	return ArrivalView{Name: name}, err
}

type refusal struct {
	uid   int
	limit metrics.Limit
}

func startLimited(t *testing.T, o ServerOptions) (*gateDaemon, string, chan refusal) {
	t.Helper()
	d := &gateDaemon{release: make(chan struct{}), entered: make(chan struct{}, 64), uploaded: make(chan error, 64)}
	sock := filepath.Join(t.TempDir(), "control.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan refusal, 256)
	o.Refused = func(_ context.Context, c Caller, l metrics.Limit) { refused <- refusal{c.UID, l} }
	s := NewServer(d, slog.New(slog.NewTextHandler(io.Discard, nil)), o)
	go s.Serve(l)
	t.Cleanup(func() {
		select {
		case <-d.release:
		default:
			close(d.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return d, sock, refused
}

// A uid with its most requests in progress is refused at once with 429 (and the refusal
// reported for the audit log); once they finish it is served again.
func TestPerUIDRequestLimit(t *testing.T) {
	d, sock, refused := startLimited(t, ServerOptions{MaxRequests: 3})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := NewClient(sock).Status(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	for i := 0; i < 3; i++ {
		<-d.entered
	}
	_, err := NewClient(sock).Status(context.Background())
	if !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), "3 requests in progress") {
		t.Fatalf("fourth request: %v", err)
	}
	if r := <-refused; r.limit != metrics.LimitControlRequests {
		t.Fatalf("refusal reported as %+v", r)
	}
	close(d.release)
	wg.Wait()
	if _, err := NewClient(sock).Status(context.Background()); err != nil {
		t.Fatalf("after the others finished: %v", err)
	}
}

// At most MaxStreams uploads per uid run at once; a stalled one is cut off after the idle
// time with 408, and its reader sees the error (so the daemon removes what it staged).
func TestStreamLimitAndIdleTimeout(t *testing.T) {
	d, sock, refused := startLimited(t, ServerOptions{MaxStreams: 2, StreamIdle: 2 * time.Second})
	// Two uploads whose bodies never finish: pipes the test never closes.
	var pipes []*io.PipeWriter
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		go func() {
			_, err := NewClient(sock).Upload(context.Background(), "stalled", pr, 1<<20)
			errs <- err
		}()
		if _, err := pw.Write([]byte("a little")); err != nil {
			t.Fatal(err)
		}
	}
	<-d.entered
	<-d.entered
	// A third is refused while the two run (they stall for 2 s before being cut).
	_, err := NewClient(sock).Upload(context.Background(), "third", strings.NewReader("x"), 1)
	if !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), "2 uploads running") {
		t.Fatalf("third upload: %v", err)
	}
	var sawStreams, sawIdle int
	for i := 0; i < 2; i++ {
		if err := <-d.uploaded; !errors.Is(err, ErrTimeout) {
			t.Fatalf("stalled upload's body ended with %v, want ErrTimeout", err)
		}
		if err := <-errs; !errors.Is(err, ErrTimeout) && !strings.Contains(err.Error(), "broke") {
			t.Fatalf("client of a stalled upload: %v", err)
		}
	}
	for len(refused) > 0 {
		switch (<-refused).limit {
		case metrics.LimitUploadStreams:
			sawStreams++
		case metrics.LimitStreamIdle:
			sawIdle++
		}
	}
	if sawStreams != 1 || sawIdle != 2 {
		t.Fatalf("refusals reported: %d stream limit, %d idle; want 1 and 2", sawStreams, sawIdle)
	}
	for _, pw := range pipes {
		pw.Close()
	}
	// A body that keeps moving is never cut, however long it takes in all.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 6; i++ {
			pw.Write([]byte("tick"))
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	go func() { <-d.entered }()
	if _, err := NewClient(sock).Upload(context.Background(), "slow", pr, 24); err != nil {
		t.Fatalf("a slow but moving upload: %v", err)
	}
	if err := <-d.uploaded; err != nil {
		t.Fatalf("slow upload's body: %v", err)
	}
}

// Past MaxConns open connections of one uid, new ones are closed at once.
func TestPerUIDConnectionLimit(t *testing.T) {
	_, sock, refused := startLimited(t, ServerOptions{MaxConns: 4})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 4; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET /v1/operator/status HTTP/1.1\r\nHost: dsh\r\n\r\n")); err == nil {
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil {
			t.Fatalf("the fifth connection was served: %q", buf[:n])
		}
	}
	if r := <-refused; r.limit != metrics.LimitControlConnections {
		t.Fatalf("refusal %+v", r)
	}
	// Closing one frees its slot.
	conns[0].Close()
	conns = conns[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return net.Dial("unix", sock) }}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://dsh" + PathAuditShow)
		tr.CloseIdleConnections()
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
