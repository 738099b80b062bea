// Command hostile is a hostile local user for the end-to-end tests: run as a test uid, it
// floods the control socket the way one uid could try to starve the others or learn who
// exists. Each command prints one line per request it made, "STATUS MICROSECONDS" (status 0
// when the connection broke), so the test can count answers and compare timings. It sends
// only made-up credentials.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage: hostile logins SOCKET N PARALLEL USER     (N logins with wrong factors, PARALLEL at once)
       hostile stall SOCKET N BYTES                 (N uploads that send BYTES each, then nothing)
       hostile refusals SOCKET N PARALLEL           (N requests the daemon refuses cheaply)`)
	os.Exit(2)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		usage()
	}
	return n
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	sock := os.Args[2]
	switch {
	case os.Args[1] == "logins" && len(os.Args) == 6:
		user := os.Args[5]
		flood(sock, atoi(os.Args[3]), atoi(os.Args[4]), func(int) (string, string, []byte) {
			body, _ := json.Marshal(map[string]string{"user": user, "password": "not the password at all", "pin": "1357", "code": "000000"})
			return http.MethodPost, "/v1/login", body
		})
	case os.Args[1] == "refusals" && len(os.Args) == 5:
		flood(sock, atoi(os.Args[3]), atoi(os.Args[4]), func(i int) (string, string, []byte) {
			if i%2 == 0 {
				// Malformed: refused before any check, but audited.
				return http.MethodPost, "/v1/login", []byte(`{"password":"x","pin":"12","code":"1"}`)
			}
			return http.MethodGet, "/v1/operator/status", nil
		})
	case os.Args[1] == "stall" && len(os.Args) == 5:
		stall(sock, atoi(os.Args[3]), atoi(os.Args[4]))
	default:
		usage()
	}
}

// flood sends n requests, parallel at a time, and prints each one's status and duration.
func flood(sock string, n, parallel int, req func(i int) (method, path string, body []byte)) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: parallel,
	}
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	var mu sync.Mutex
	out := make(chan int, n)
	for i := 0; i < n; i++ {
		out <- i
	}
	close(out)
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range out {
				method, path, body := req(i)
				r, _ := http.NewRequest(method, "http://dsh"+path, bytes.NewReader(body))
				start := time.Now()
				status := 0
				if resp, err := client.Do(r); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				fmt.Printf("%d %d\n", status, time.Since(start).Microseconds())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// stall opens n uploads at once, each declaring ten times what it sends, sends size bytes
// and then nothing, and prints each one's answer as it comes.
func stall(sock string, n, size int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	chunk := bytes.Repeat([]byte("stalled upload data "), 1<<15)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start := time.Now()
			status := 0
			defer func() {
				mu.Lock()
				fmt.Printf("%d %d\n", status, time.Since(start).Microseconds())
				mu.Unlock()
			}()
			c, err := net.Dial("unix", sock)
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /v1/arrivals/upload?name=stalled-%d.bin HTTP/1.1\r\nHost: dsh\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", i, 10*size)
			go func() {
				for sent := 0; sent < size; {
					k := min(len(chunk), size-sent)
					if _, err := c.Write(chunk[:k]); err != nil {
						return
					}
					sent += k
				}
			}()
			c.SetReadDeadline(time.Now().Add(5 * time.Minute))
			line, _, _ := strings.Cut(readLine(c), "\r\n")
			if f := strings.Fields(line); len(f) >= 2 {
				status, _ = strconv.Atoi(f[1])
			}
		}(i)
	}
	wg.Wait()
}

// readLine reads the start of the answer, up to its first line's end.
func readLine(c net.Conn) string {
	var b []byte
	buf := make([]byte, 256)
	for !bytes.Contains(b, []byte("\r\n")) {
		k, err := c.Read(buf)
		b = append(b, buf[:k]...)
		if err != nil {
			break
		}
	}
	return string(b)
}
