package airlock

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"dsh/kv"
	"dsh/scan"
)

// Key layout in kv. Every key of this package starts with "airlock/"; no other package
// writes under it. Values are JSON; Badger encrypts them at rest.
//
//	airlock/req/<id>          Request
//	airlock/policy/<project>  Policy
const (
	prefix       = "airlock/"
	reqPrefix    = prefix + "req/"
	policyPrefix = prefix + "policy/"
)

// pinPrefix names the pins of requests (Files.Freeze): "egress/<id>".
const pinPrefix = "egress/"

func reqKey(id string) []byte         { return []byte(reqPrefix + id) }
func policyKey(project string) []byte { return []byte(policyPrefix + project) }
func pinName(id string) string        { return pinPrefix + id }

// File is one file of a request.
type File struct {
	// Path is where the file was in the share, as the requester named it.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// SHA256 is the hex SHA-256 of the plaintext frozen at submission.
	SHA256 string `json:"sha256,omitempty"`
	// Objects are the objects the content was read from.
	Objects []string `json:"objects,omitempty"`
	// Verdict is the malware scan at submission.
	Verdict *scan.Verdict `json:"verdict,omitempty"`
	// Content is Files' handle on the frozen bytes.
	Content []byte `json:"content,omitempty"`
}

// Approval is one reviewer's approval.
type Approval struct {
	User string    `json:"user"`
	At   time.Time `json:"at"`
}

// Event is one transition, as the request keeps its own history (the audit log has the
// same, chained).
type Event struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Action string    `json:"action"`
	State  State     `json:"state"`
	Why    string    `json:"why,omitempty"`
}

// Request is one egress request.
type Request struct {
	ID        string `json:"id"`
	Project   string `json:"project"`
	Share     string `json:"share"`
	Requester string `json:"requester"`
	Reason    string `json:"reason"`
	State     State  `json:"state"`
	Files     []File `json:"files"`
	// Manifest is the SHA-256 over the files' paths, sizes and hashes: one value that
	// names exactly what was submitted.
	Manifest string `json:"manifest,omitempty"`
	// K is the approvals needed, fixed at submission.
	K         int        `json:"k,omitempty"`
	Approvals []Approval `json:"approvals,omitempty"`
	Created   time.Time  `json:"created"`
	Submitted time.Time  `json:"submitted,omitzero"`
	// Expires is when the current state ends by itself: the review deadline while
	// submitted or in review, the end of the download window once approved.
	Expires   time.Time `json:"expires,omitzero"`
	Downloads int       `json:"downloads,omitempty"`
	// Unpinned says that the frozen objects were let go (the request is over).
	Unpinned bool    `json:"unpinned,omitempty"`
	History  []Event `json:"history"`
}

// Policy is a project's review rule: K approvals from its reviewers (the IAO, the IAAs and
// the extra reviewers named here), never counting the requester.
type Policy struct {
	K         int      `json:"k"`
	Reviewers []string `json:"reviewers,omitempty"`
}

// newID draws a request ID: short enough to type.
func newID() string {
	var b [5]byte
	rand.Read(b[:])
	return "e" + hex.EncodeToString(b[:])
}

// validID refuses anything that is not an ID newID could have drawn, before it reaches a key.
func validID(id string) bool {
	if len(id) != 11 || id[0] != 'e' {
		return false
	}
	_, err := hex.DecodeString(id[1:])
	return err == nil && strings.ToLower(id) == id
}

// manifest hashes the files' paths, sizes and hashes, in order.
func manifest(files []File) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\t%d\t%s\n", f.Path, f.Size, f.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func getJSON(tx kv.Txn, key []byte, v any) (bool, error) {
	b, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("airlock: read %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("airlock: stored record %s is damaged: %w", key, err)
	}
	return true, nil
}

func setJSON(tx kv.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("airlock: encode %s: %w", key, err)
	}
	return tx.Set(key, b)
}

// load reads request id.
func (s *Store) load(ctx context.Context, id string) (*Request, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var r Request
	var ok bool
	err := s.kv.View(ctx, func(tx kv.Txn) (err error) {
		ok, err = getJSON(tx, reqKey(id), &r)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return &r, nil
}

// save writes r durably.
func (s *Store) save(ctx context.Context, r *Request) error {
	return s.kv.Update(ctx, func(tx kv.Txn) error { return setJSON(tx, reqKey(r.ID), r) })
}

// all reads every request.
func (s *Store) all(ctx context.Context) ([]*Request, error) {
	var out []*Request
	err := s.kv.View(ctx, func(tx kv.Txn) error {
		return tx.Scan([]byte(reqPrefix), nil, func(k, v []byte) (bool, error) {
			var r Request
			if err := json.Unmarshal(v, &r); err != nil {
				return false, fmt.Errorf("airlock: stored record %s is damaged: %w", k, err)
			}
			out = append(out, &r)
			return true, nil
		})
	})
	return out, err
}

// Policy returns project's review rule (the default when it set none).
func (s *Store) Policy(ctx context.Context, project string) (Policy, error) {
	p := Policy{K: DefaultApprovals}
	err := s.kv.View(ctx, func(tx kv.Txn) error {
		_, err := getJSON(tx, policyKey(project), &p)
		return err
	})
	if p.K <= 0 {
		p.K = DefaultApprovals
	}
	return p, err
}
