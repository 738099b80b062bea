package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// ListQuarantine returns the files the malware gate stopped.
func (c *Client) ListQuarantine(ctx context.Context) ([]QuarantineView, error) {
	var out QuarantineResponse
	err := c.do(ctx, http.MethodGet, PathQuarantine, nil, nil, &out)
	return out.Files, err
}

// ReleaseQuarantine asks for a quarantined file's release (the second person releases it).
func (c *Client) ReleaseQuarantine(ctx context.Context, id string) (QuarantineReleaseResponse, error) {
	var out QuarantineReleaseResponse
	err := c.do(ctx, http.MethodPost, PathQuarantineRelease, nil, QuarantineRef{ID: id}, &out)
	return out, err
}

// DeleteQuarantine deletes a quarantined file for good.
func (c *Client) DeleteQuarantine(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, PathQuarantineDelete, nil, QuarantineRef{ID: id}, nil)
}

// CreateEgress asks to release files of a share.
func (c *Client) CreateEgress(ctx context.Context, req EgressCreateRequest) (EgressView, error) {
	var out EgressView
	err := c.do(ctx, http.MethodPost, PathEgressCreate, nil, req, &out)
	return out, err
}

// ListEgress returns the requests the caller may see.
func (c *Client) ListEgress(ctx context.Context) ([]EgressView, error) {
	var out EgressListResponse
	err := c.do(ctx, http.MethodGet, PathEgress, nil, nil, &out)
	return out.Requests, err
}

// ShowEgress returns one request with the project's earlier ones.
func (c *Client) ShowEgress(ctx context.Context, id string) (EgressShowResponse, error) {
	var out EgressShowResponse
	err := c.do(ctx, http.MethodGet, PathEgressShow, url.Values{"id": {id}}, nil, &out)
	return out, err
}

// EgressAction does action (submit, approve, reject, revoke, cancel) to a request.
func (c *Client) EgressAction(ctx context.Context, action string, req EgressAction) (EgressView, error) {
	paths := map[string]string{"submit": PathEgressSubmit, "approve": PathEgressApprove, "reject": PathEgressReject,
		"revoke": PathEgressRevoke, "cancel": PathEgressCancel}
	p, ok := paths[action]
	if !ok {
		return EgressView{}, fmt.Errorf("%w: unknown action %q", ErrInvalid, action)
	}
	var out EgressView
	err := c.do(ctx, http.MethodPost, p, nil, req, &out)
	return out, err
}

// EgressPolicy returns a project's review rule.
func (c *Client) EgressPolicy(ctx context.Context, project string) (EgressPolicyView, error) {
	var out EgressPolicyView
	err := c.do(ctx, http.MethodGet, PathEgressPolicy, url.Values{"project": {project}}, nil, &out)
	return out, err
}

// SetEgressPolicy changes a project's review rule.
func (c *Client) SetEgressPolicy(ctx context.Context, req EgressPolicyRequest) (EgressPolicyView, error) {
	var out EgressPolicyView
	err := c.do(ctx, http.MethodPost, PathEgressPolicy+"/set", nil, req, &out)
	return out, err
}

// DownloadEgress opens file n of an approved request: the caller reads the body (and checks
// it against SHA256 too) and closes it.
func (c *Client) DownloadEgress(ctx context.Context, id string, n int) (*Stream, error) {
	return c.openStream(ctx, PathEgressDownload, url.Values{"id": {id}, "file": {strconv.Itoa(n)}})
}

// ViewEgress opens file n of a request through the review view.
func (c *Client) ViewEgress(ctx context.Context, id string, n int) (*Stream, error) {
	return c.openStream(ctx, PathEgressView, url.Values{"id": {id}, "file": {strconv.Itoa(n)}})
}

func (c *Client) openStream(ctx context.Context, path string, q url.Values) (*Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dsh"+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoDaemon, c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e ErrorResponse
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = "the dsh daemon answered " + resp.Status
		}
		return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	return &Stream{Name: resp.Header.Get(HeaderName), Size: resp.ContentLength, SHA256: resp.Header.Get(HeaderSHA256), Body: resp.Body}, nil
}
