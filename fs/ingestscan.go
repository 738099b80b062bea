package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"dsh/content"
	"dsh/metrics"
	"dsh/scan"
)

// Errors of the malware gate; the daemon maps them to control errors.
var (
	// ErrScanner: the upload was not accepted because no verdict could be had (no scanner
	// configured, clamd unreachable, too slow or answering nonsense). Nothing is published
	// unscanned; the client may try again.
	ErrScanner = errors.New("malware scanner unavailable; the file was not accepted")
	// ErrQuarantined: the scanner found something, or could not scan the file whole; the
	// file is held in quarantine, out of the uploader's reach.
	ErrQuarantined = errors.New("stopped by the malware gate")
)

// fileReader reads an open content.File from the start, for the scanner.
type fileReader struct {
	ctx  context.Context
	f    *content.File
	off  int64
	size int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rest := r.size - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := r.f.ReadAt(r.ctx, p, r.off)
	r.off += int64(n)
	if err == nil && n == 0 {
		err = io.EOF
	}
	return n, err
}

// scanStaged streams the staged file's plaintext, decrypted as it is read, to the scanner:
// nothing of it is written anywhere but the scanner's socket. An error means no verdict
// (the upload stays staged, and its caller fails it). u.mu must be held.
func (u *Upload) scanStaged(ctx context.Context, size int64) (scan.Verdict, error) {
	sc := u.g.opts.Scanner
	if sc == nil {
		u.scanFailed(ctx, "no malware scanner is configured (dsh serve --clamd SOCKET)")
		return scan.Verdict{}, fmt.Errorf("arrivals: upload of %q: %w (no scanner is configured)", u.name, ErrScanner)
	}
	if err := u.reopen(ctx); err != nil {
		return scan.Verdict{}, err
	}
	defer u.dropFile()
	start := time.Now()
	v, err := sc.Scan(ctx, size, &fileReader{ctx: context.WithoutCancel(ctx), f: u.f, size: size})
	if err != nil {
		if errors.Is(err, content.ErrIntegrity) {
			return scan.Verdict{}, fmt.Errorf("arrivals: scan of %q: %w", u.name, err)
		}
		u.scanFailed(ctx, err.Error())
		u.g.airlockMetrics(func(m *metrics.Airlock) { m.Scanned(metrics.ScanError, 0, time.Since(start)) })
		return scan.Verdict{}, fmt.Errorf("arrivals: upload of %q: %w: %v", u.name, ErrScanner, err)
	}
	u.g.airlockMetrics(func(m *metrics.Airlock) { m.Scanned(metrics.ScanResult(v.Result), size, time.Since(start)) })
	return v, nil
}

// scanFailed audits an upload refused for want of a verdict.
func (u *Upload) scanFailed(ctx context.Context, why string) {
	_ = u.g.recordAs(ctx, u.be, u.uid, u.user, "arrivals.scan", u.user+"/"+u.name, "error", why)
}

// airlockMetrics calls fn with the airlock's metrics, when there are any.
func (g *Group) airlockMetrics(fn func(*metrics.Airlock)) {
	if g.opts.Airlock != nil {
		fn(g.opts.Airlock)
	}
}
