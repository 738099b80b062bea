package control

import (
	"context"
	"io"
	"net/http"
)

// Arrivals is the part of the daemon behind the Arrivals endpoints.
type Arrivals interface {
	// Upload streams body into the caller's Arrivals folder as name.
	Upload(ctx context.Context, c Caller, name string, body io.Reader) (ArrivalView, error)
	// ListArrivals lists the caller's arrivals.
	ListArrivals(ctx context.Context, c Caller) ([]ArrivalView, error)
}

func (s *Server) arrivalsRoutes(d Arrivals) {
	// The body is the file itself: no size limit and no read deadline, since an upload of
	// several GB takes as long as it takes; the daemon stops reading when the client goes.
	s.routes[PathUpload] = route{method: http.MethodPost, stream: true, h: func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		return d.Upload(ctx, c, r.URL.Query().Get(UploadNameParam), r.Body)
	}}
	get(s, PathArrivals, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		as, err := d.ListArrivals(ctx, c)
		return ArrivalsResponse{Arrivals: nonNil(as)}, err
	})
}
