package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"dsh/audit"
	"dsh/control"
	"dsh/internal/version"
	"dsh/store"
	"dsh/vault"
)

// Status reports sealed or not, version and uptime to the operator.
func (d *Daemon) Status(ctx context.Context, c control.Caller) (control.StatusResponse, error) {
	if err := d.requireOperator(ctx, c, "operator.status"); err != nil {
		return control.StatusResponse{}, err
	}
	return control.StatusResponse{
		Sealed:        d.sealed(),
		Version:       version.Version,
		UptimeSeconds: time.Since(d.started).Seconds(),
		DataDir:       d.cfg.DataDir,
	}, nil
}

// Unseal opens the store with the operator's passphrase.
func (d *Daemon) Unseal(ctx context.Context, c control.Caller, passphrase []byte) error {
	if err := d.requireOperator(ctx, c, "vault.unseal"); err != nil {
		return err
	}
	if len(passphrase) == 0 {
		return fmt.Errorf("%w: the passphrase is empty", control.ErrInvalid)
	}
	return d.unseal(passphrase, c.UID)
}

// Rekey seals the root key under a new unseal passphrase: the old one stops working. It
// needs the store unsealed (the change is audited before it is made, and the passphrase
// must open the root key the daemon holds) and refuses a weak new passphrase.
func (d *Daemon) Rekey(ctx context.Context, c control.Caller, passphrase, newPassphrase []byte) error {
	if err := d.requireOperator(ctx, c, "vault.rekey"); err != nil {
		return err
	}
	if len(passphrase) == 0 || len(newPassphrase) == 0 {
		return fmt.Errorf("%w: a passphrase is empty", control.ErrInvalid)
	}
	if err := vault.CheckPassphrase(newPassphrase); err != nil {
		return fmt.Errorf("%w: %w", control.ErrInvalid, err)
	}
	// Exclusive: no unseal, seal or other rekey meanwhile.
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.parts
	if p == nil {
		return fmt.Errorf("%w: %w (rekey needs the store unsealed, to audit it)", control.ErrUnavailable, vault.ErrSealed)
	}
	ctx = context.WithoutCancel(ctx)
	record := func(result, detail string) error {
		_, err := p.Audit.Append(ctx, audit.Entry{UID: int64(c.UID), Action: "vault.rekey", Result: result, Detail: detail}, audit.Durable)
		return err
	}
	err := vault.Rekey(d.cfg.DataDir, passphrase, newPassphrase, vault.DefaultKDF, func(root *vault.Key) error {
		if !root.Equal(p.Root) {
			return errors.New("the root key file no longer holds the key this daemon unsealed")
		}
		// The change is recorded before it is made: no record, no new passphrase.
		if err := record("ok", ""); err != nil {
			return fmt.Errorf("rekey refused, the audit log cannot be written: %w", err)
		}
		return nil
	})
	switch {
	case errors.Is(err, vault.ErrWrongPassphrase):
		_ = record("denied", "wrong passphrase")
		return fmt.Errorf("%w: %w", control.ErrUnauthorized, err)
	case err != nil:
		_ = record("error", err.Error())
		return err
	}
	d.log.Info("unseal passphrase changed", "uid", c.UID)
	return nil
}

// Seal closes the store and wipes every key from memory.
func (d *Daemon) Seal(ctx context.Context, c control.Caller) error {
	if err := d.requireOperator(ctx, c, "vault.seal"); err != nil {
		return err
	}
	return d.seal(c.UID, "vault.seal")
}

// AuditVerify walks the whole audit chain. It reads without holding the store: a seal
// does not wait for it, and ends it.
func (d *Daemon) AuditVerify(ctx context.Context, c control.Caller) (control.AuditVerifyResponse, error) {
	if err := d.requireOperator(ctx, c, "audit.verify"); err != nil {
		return control.AuditVerifyResponse{}, err
	}
	rd, ctx, err := d.auditReader(ctx)
	if err != nil {
		return control.AuditVerifyResponse{}, err
	}
	defer rd.Close()
	res, err := rd.Verify(ctx)
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return control.AuditVerifyResponse{}, fmt.Errorf("%w: the store was sealed during the walk", control.ErrUnavailable)
	}
	return VerifyView(res, err), nil
}

// AuditShow sends the records q selects as it reads them, holding one at a time and
// nothing of the store: a seal does not wait for it, and ends it.
func (d *Daemon) AuditShow(ctx context.Context, c control.Caller, q control.AuditQuery, emit func(control.AuditRecord) error) error {
	if err := d.requireOperator(ctx, c, "audit.show"); err != nil {
		return err
	}
	rd, ctx, err := d.auditReader(ctx)
	if err != nil {
		return err
	}
	defer rd.Close()
	aq := audit.Query{Since: q.Since, Until: q.Until, User: q.User, Action: q.Action, Limit: q.Limit}
	return rd.Scan(ctx, aq, func(r audit.Record) error { return emit(RecordView(r)) })
}

// auditReader returns a reader of the audit log as it is now, which holds its own copy of
// the audit key, and a context that ends with ctx or at the next seal, when the reader
// must stop (its key copy is wiped when the caller closes it).
func (d *Daemon) auditReader(ctx context.Context) (*audit.Reader, context.Context, error) {
	var rd *audit.Reader
	var sealed <-chan struct{}
	err := d.withStore(func(p *store.Parts) (err error) {
		rd, err = p.Audit.NewReader()
		sealed = d.sealing
		return err
	})
	if err != nil {
		return nil, ctx, err
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		select {
		case <-sealed:
		case <-ctx.Done():
		}
	}()
	return rd, ctx, nil
}

// RecordView turns an audit record into its wire form.
func RecordView(r audit.Record) control.AuditRecord {
	return control.AuditRecord{Seq: r.Seq, Time: r.Time, UID: r.UID, User: r.User, Action: r.Action, Object: r.Object, Result: r.Result, Detail: r.Detail}
}

// VerifyView turns the result of an audit chain walk into its wire form.
func VerifyView(res audit.VerifyResult, err error) control.AuditVerifyResponse {
	out := control.AuditVerifyResponse{OK: err == nil, Records: res.Records, Warning: res.Warning}
	if err != nil {
		out.Problem = err.Error()
	}
	return out
}
