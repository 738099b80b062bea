package daemon

import (
	"context"
	"fmt"
	"time"

	"dsh/audit"
	"dsh/control"
	"dsh/internal/version"
	"dsh/store"
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

// Seal closes the store and wipes every key from memory.
func (d *Daemon) Seal(ctx context.Context, c control.Caller) error {
	if err := d.requireOperator(ctx, c, "vault.seal"); err != nil {
		return err
	}
	return d.seal(c.UID, "vault.seal")
}

// AuditVerify walks the whole audit chain.
func (d *Daemon) AuditVerify(ctx context.Context, c control.Caller) (control.AuditVerifyResponse, error) {
	if err := d.requireOperator(ctx, c, "audit.verify"); err != nil {
		return control.AuditVerifyResponse{}, err
	}
	var out control.AuditVerifyResponse
	err := d.withStore(func(p *store.Parts) error {
		res, err := p.Audit.Verify()
		out = VerifyView(res, err)
		return nil
	})
	return out, err
}

// AuditShow returns the records since a time.
func (d *Daemon) AuditShow(ctx context.Context, c control.Caller, since time.Time) ([]control.AuditRecord, error) {
	if err := d.requireOperator(ctx, c, "audit.show"); err != nil {
		return nil, err
	}
	var out []control.AuditRecord
	err := d.withStore(func(p *store.Parts) error {
		return p.Audit.Read(since, func(r audit.Record) error {
			out = append(out, RecordView(r))
			return nil
		})
	})
	return out, err
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
