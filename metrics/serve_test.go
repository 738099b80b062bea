package metrics

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, opts ServeOptions) (*Server, *Metrics) {
	t.Helper()
	reg, m := newMetrics(t)
	s, err := Serve("127.0.0.1:0", reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, m
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestServeMetrics(t *testing.T) {
	s, m := serve(t, ServeOptions{})
	touchAll(m)
	code, body := httpGet(t, "http://"+s.Addr()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{"dsh_vault_sealed 1", "go_goroutines", `dsh_fuse_operations_total{op="read",result="ok",tree="group"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := httpGet(t, "http://"+s.Addr()+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof without Pprof: %d; want 404", code)
	}
}

func TestServePprof(t *testing.T) {
	s, _ := serve(t, ServeOptions{Pprof: true})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1"} {
		if code, _ := httpGet(t, "http://"+s.Addr()+path); code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
	}
}

func TestServeBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reg, _ := newMetrics(t)
	_, err = Serve(ln.Addr().String(), reg, ServeOptions{})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Serve on a busy port = %v; want an error naming the address", err)
	}
}

func TestServeShutdown(t *testing.T) {
	reg, _ := newMetrics(t)
	s, err := Serve("127.0.0.1:0", reg, ServeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Fatal("still listening after Shutdown")
	}
}

// TestPromtoolCheckMetrics runs Prometheus's own linter over a real scrape.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not in PATH; CI must install it (Debian package prometheus)")
		}
		t.Skip("promtool not in PATH; install the Debian package prometheus to run this check")
	}
	s, m := serve(t, ServeOptions{})
	touchAll(m)
	_, body := httpGet(t, "http://"+s.Addr()+"/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}
