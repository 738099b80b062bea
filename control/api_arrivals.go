package control

import "time"

// Paths of the Arrivals endpoints.
const (
	// PathUpload takes the file's bytes as the raw request body (not JSON), streamed;
	// the query parameter UploadNameParam names the file.
	PathUpload = "/v1/arrivals/upload"
	// PathArrivals lists the caller's arrivals.
	PathArrivals = "/v1/arrivals"
	// UploadNameParam is the query parameter of PathUpload naming the file.
	UploadNameParam = "name"
)

// ArrivalView is one file in the caller's Arrivals folder.
type ArrivalView struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	Arrived time.Time `json:"arrived"`
	Expires time.Time `json:"expires"`
}

// ArrivalsResponse answers GET /v1/arrivals.
type ArrivalsResponse struct {
	Arrivals []ArrivalView `json:"arrivals"`
}
