package scan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Defaults of ClamdOptions.
const (
	// DefaultMaxSize is the largest file sent to clamd: 1 GiB. ClamAV cannot scan files of
	// 2 GB or more at all; clamd's StreamMaxLength must be at least this (see README).
	DefaultMaxSize = 1 << 30
	// DefaultWait is how long a scan waits for an unreachable clamd to come back.
	DefaultWait = 30 * time.Second
	// DefaultIdle is how long clamd may take to accept the next piece of a stream or to
	// give its verdict once the stream has ended.
	DefaultIdle = 2 * time.Minute
)

// chunkSize is the length of each INSTREAM chunk.
const chunkSize = 256 << 10

// maxReply bounds clamd's answer: a signature name and a few words.
const maxReply = 4 << 10

// ClamdOptions tune a Clamd; zero values take the defaults.
type ClamdOptions struct {
	// MaxSize: a file larger than this is held without being sent.
	MaxSize int64
	// Wait: how long a scan keeps trying to reach clamd before it fails with
	// ErrUnavailable.
	Wait time.Duration
	// Idle: how long clamd may take over any one step of a scan (taking a chunk, or giving
	// the verdict) before the scan fails with ErrUnavailable.
	Idle time.Duration
}

// Clamd is a Scanner backed by clamd on a Unix socket. It keeps no connection: each scan
// dials anew, so a clamd restarted meanwhile is simply found again.
type Clamd struct {
	socket string
	opts   ClamdOptions
}

var _ Scanner = (*Clamd)(nil)

// NewClamd returns a client of the clamd listening on socket.
func NewClamd(socket string, opts ClamdOptions) *Clamd {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	if opts.Idle <= 0 {
		opts.Idle = DefaultIdle
	}
	return &Clamd{socket: socket, opts: opts}
}

// Socket returns the path of clamd's socket.
func (c *Clamd) Socket() string { return c.socket }

// MaxSize returns the largest file this client sends to clamd.
func (c *Clamd) MaxSize() int64 { return c.opts.MaxSize }

// dial connects to clamd, trying again until Wait has passed or ctx ends.
func (c *Clamd) dial(ctx context.Context) (net.Conn, error) {
	deadline := time.Now().Add(c.opts.Wait)
	var last error
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := d.DialContext(dctx, "unix", c.socket)
		cancel()
		if err == nil {
			return conn, nil
		}
		last = err
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: clamd at %s did not answer for %s: %v", ErrUnavailable, c.socket, c.opts.Wait, last)
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// command sends one null-terminated command that takes no stream and returns the answer.
func (c *Clamd) command(ctx context.Context, cmd string) (string, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(time.Now().Add(c.opts.Idle))
	if _, err := conn.Write([]byte("z" + cmd + "\x00")); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrUnavailable, cmd, err)
	}
	return readReply(conn)
}

// Ping checks that clamd answers.
func (c *Clamd) Ping(ctx context.Context) error {
	r, err := c.command(ctx, "PING")
	if err != nil {
		return err
	}
	if r != "PONG" {
		return fmt.Errorf("%w: PING answered %q", ErrFailed, r)
	}
	return nil
}

// Version returns clamd's version line, such as "ClamAV 1.4.6/...".
func (c *Clamd) Version(ctx context.Context) (string, error) {
	return c.command(ctx, "VERSION")
}

// readReply reads clamd's answer up to its terminating NUL (or the end of the stream).
func readReply(conn net.Conn) (string, error) {
	br := bufio.NewReader(io.LimitReader(conn, maxReply))
	b, err := br.ReadBytes(0)
	if err != nil && !(errors.Is(err, io.EOF) && len(b) > 0) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", fmt.Errorf("%w: clamd gave no answer in time", ErrUnavailable)
		}
		return "", fmt.Errorf("%w: reading clamd's answer: %v", ErrUnavailable, err)
	}
	return strings.TrimSpace(string(bytes.TrimRight(b, "\x00"))), nil
}

// Scan implements Scanner. A file over MaxSize is held without being sent; otherwise its
// bytes are streamed to clamd in chunks and clamd's answer becomes the verdict.
func (c *Clamd) Scan(ctx context.Context, size int64, r io.Reader) (Verdict, error) {
	if size > c.opts.MaxSize {
		return Verdict{Result: Held, Reason: fmt.Sprintf("%d bytes, over the scanner's limit of %d", size, c.opts.MaxSize)}, nil
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return Verdict{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	step := func() { conn.SetDeadline(time.Now().Add(c.opts.Idle)) }
	step()
	if _, err := conn.Write([]byte("zINSTREAM\x00")); err != nil {
		return Verdict{}, fmt.Errorf("%w: start the stream: %v", ErrUnavailable, err)
	}
	buf := make([]byte, 4+chunkSize)
	var sent int64
	for {
		n, rerr := io.ReadFull(r, buf[4:])
		if n > 0 {
			if sent+int64(n) > c.opts.MaxSize {
				// The file grew past what was announced: never let the rest through unscanned.
				return Verdict{Result: Held, Reason: fmt.Sprintf("more than the scanner's limit of %d bytes", c.opts.MaxSize)}, nil
			}
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			step()
			if _, err := conn.Write(buf[:4+n]); err != nil {
				// clamd closes the stream when it has had more than its StreamMaxLength,
				// after saying so: read what it said.
				if reply, rerr := readReply(conn); rerr == nil && reply != "" {
					return verdictOf(reply)
				}
				return Verdict{}, fmt.Errorf("%w: sending the stream: %v", ErrUnavailable, err)
			}
			sent += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return Verdict{}, fmt.Errorf("scan: reading the file: %w", rerr)
		}
	}
	if size >= 0 && sent != size {
		return Verdict{}, fmt.Errorf("%w: read %d bytes of a file of %d", ErrFailed, sent, size)
	}
	step()
	if _, err := conn.Write([]byte{0, 0, 0, 0}); err != nil {
		if reply, rerr := readReply(conn); rerr == nil && reply != "" {
			return verdictOf(reply)
		}
		return Verdict{}, fmt.Errorf("%w: ending the stream: %v", ErrUnavailable, err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return Verdict{}, err
	}
	return verdictOf(reply)
}

// verdictOf reads one INSTREAM answer: "stream: OK", "stream: NAME FOUND", or "... ERROR".
// Findings that say the file could not be looked at whole are held, not infected: clamd
// reports them as FOUND when AlertExceedsMax and AlertEncrypted are on.
func verdictOf(reply string) (Verdict, error) {
	switch {
	case reply == "stream: OK":
		return Verdict{Result: Clean}, nil
	case strings.HasPrefix(reply, "INSTREAM size limit exceeded"):
		return Verdict{Result: Held, Reason: "larger than clamd's StreamMaxLength"}, nil
	case strings.HasPrefix(reply, "stream: ") && strings.HasSuffix(reply, " FOUND"):
		sig := strings.TrimSuffix(strings.TrimPrefix(reply, "stream: "), " FOUND")
		if sig == "" || strings.ContainsAny(sig, "\n\r\x00") {
			break
		}
		switch {
		case strings.HasPrefix(sig, "Heuristics.Limits.Exceeded"):
			return Verdict{Result: Held, Signature: sig, Reason: "beyond the scanner's limits"}, nil
		case strings.HasPrefix(sig, "Heuristics.Encrypted"):
			return Verdict{Result: Held, Signature: sig, Reason: "encrypted: the scanner cannot look inside"}, nil
		}
		return Verdict{Result: Infected, Signature: sig}, nil
	}
	if len(reply) > 200 {
		reply = reply[:200] + "..."
	}
	return Verdict{}, fmt.Errorf("%w: clamd answered %q", ErrFailed, reply)
}
