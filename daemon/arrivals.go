package daemon

import (
	"context"
	"fmt"
	"io"

	"dsh/control"
	dshfs "dsh/fs"
	"dsh/portal"
)

// arrivalView is an arrival as the control socket shows it.
func arrivalView(a dshfs.Arrival) control.ArrivalView {
	return control.ArrivalView{Name: a.Name, Size: a.Size, Arrived: a.Arrived, Expires: a.Expires}
}

// arrivalsKinds are the control kinds of the ingest path's errors.
var arrivalsKinds = []kind{
	{dshfs.ErrNoSession, control.ErrForbidden},
	{dshfs.ErrBadName, control.ErrInvalid},
	{dshfs.ErrSealed, control.ErrUnavailable},
	{dshfs.ErrOffset, control.ErrConflict},
	{dshfs.ErrTooLarge, control.ErrInvalid},
	{dshfs.ErrUploadClosed, control.ErrNotFound},
	{dshfs.ErrQuarantined, control.ErrForbidden},
	{dshfs.ErrScanner, control.ErrUnavailable},
}

// arrivalsError gives the ingest path's errors their control kinds.
func arrivalsError(err error) error { return withKind(err, arrivalsKinds) }

// ingester returns the Arrivals tree, or an error when this daemon serves none.
func (d *Daemon) ingester() (dshfs.Ingester, error) {
	if d.arrivals == nil {
		return nil, fmt.Errorf("%w: this daemon serves no Arrivals tree (dsh serve --arrivals DIR)", control.ErrUnavailable)
	}
	return d.arrivals, nil
}

// Upload streams a file into the caller's Arrivals folder. It does not hold the store
// open: a seal during a long transfer goes ahead, the transfer fails, and the half-written
// file is removed when the store is next unsealed.
func (d *Daemon) Upload(ctx context.Context, c control.Caller, name string, body io.Reader) (control.ArrivalView, error) {
	in, err := d.ingester()
	if err != nil {
		return control.ArrivalView{}, err
	}
	a, err := in.Ingest(ctx, c.UID, name, body)
	return arrivalView(a), arrivalsError(err)
}

// ListArrivals lists the caller's arrivals with their expiry.
func (d *Daemon) ListArrivals(ctx context.Context, c control.Caller) ([]control.ArrivalView, error) {
	in, err := d.ingester()
	if err != nil {
		return nil, err
	}
	as, err := in.List(ctx, c.UID)
	out := make([]control.ArrivalView, 0, len(as))
	for _, a := range as {
		out = append(out, arrivalView(a))
	}
	return out, arrivalsError(err)
}

// BeginUpload starts a resumable upload of size bytes into the caller's Arrivals (the
// portal's tus transfers); it is finished or aborted through the Upload it returns.
func (d *Daemon) BeginUpload(ctx context.Context, c control.Caller, name string, size int64) (portal.Upload, error) {
	in, err := d.ingester()
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: a resumable upload needs its length", control.ErrInvalid)
	}
	up, err := in.BeginUpload(ctx, c.UID, name, size)
	if err != nil {
		return nil, arrivalsError(err)
	}
	return portalUpload{up}, nil
}

// portalUpload gives an fs upload the control kinds of its errors and views.
type portalUpload struct{ *dshfs.Upload }

func (u portalUpload) Write(ctx context.Context, off int64, r io.Reader) (int64, error) {
	n, err := u.Upload.Write(ctx, off, r)
	return n, arrivalsError(err)
}

func (u portalUpload) Finish(ctx context.Context) (control.ArrivalView, error) {
	a, err := u.Upload.Finish(ctx)
	return arrivalView(a), arrivalsError(err)
}
