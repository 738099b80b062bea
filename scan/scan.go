// Package scan is dsh's malware gate: a client of ClamAV's clamd that streams a file's
// bytes over clamd's INSTREAM protocol on a Unix socket and turns clamd's answer into a
// verdict: clean, infected (with the signature's name), or held for manual review (the file
// is beyond what the scanner can look at: over its size limits, or encrypted).
//
// It owns the protocol and the policy of what a verdict is; it never decides what happens to
// a file. It must never report clean for anything clamd did not answer "OK" to: a scanner
// that cannot be reached, that answers late or garbled, or a stream cut short gives an
// error, and a file too large to scan is held, never passed (fail closed). It writes nothing
// to disk: the bytes go from the caller's reader to the socket.
package scan

import (
	"context"
	"errors"
	"io"
)

// Result is the outcome of one scan; the strings are the values of the metric label
// dsh_ingress_scans_total{result} and are stored in records, so they never change.
type Result string

// The results of a scan. A scan that did not end in one of these is an error.
const (
	// Clean: clamd read every byte and found nothing.
	Clean Result = "clean"
	// Infected: clamd found a signature (Verdict.Signature names it).
	Infected Result = "infected"
	// Held: the file could not be scanned whole (larger than the scanner's limits, or an
	// encrypted archive or document); it waits for a person to review it.
	Held Result = "held"
)

// Verdict is what a scan found.
type Verdict struct {
	Result Result `json:"result"`
	// Signature is the name clamd gave the finding, for Infected and for Held files that
	// clamd itself flagged (Heuristics.Limits.Exceeded.*, Heuristics.Encrypted.*).
	Signature string `json:"signature,omitempty"`
	// Reason says in words why a file is held.
	Reason string `json:"reason,omitempty"`
}

// String describes the verdict in one line, for audit records and messages.
func (v Verdict) String() string {
	switch {
	case v.Result == Infected:
		return "infected: " + v.Signature
	case v.Result == Held && v.Signature != "":
		return "held for review: " + v.Reason + " (" + v.Signature + ")"
	case v.Result == Held:
		return "held for review: " + v.Reason
	}
	return string(v.Result)
}

// Errors of a scan; callers match them with errors.Is.
var (
	// ErrUnavailable: the scanner could not be reached, or did not answer in time. Nothing
	// was scanned; the caller must not let the file through.
	ErrUnavailable = errors.New("malware scanner unavailable")
	// ErrFailed: the scanner answered, but not with a verdict (an error of its own, or an
	// answer this client does not understand).
	ErrFailed = errors.New("malware scan failed")
)

// Scanner scans a stream of size bytes (-1 when unknown). An error means no verdict: the
// file is neither clean nor infected, and must not pass.
type Scanner interface {
	Scan(ctx context.Context, size int64, r io.Reader) (Verdict, error)
}
