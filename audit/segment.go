package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Segments. The log is a run of files, each holding the frames of consecutive records: the
// first, "audit.log", from record 1, and each later one named by the seq of its first
// record, "audit-<20 decimal digits>.log". The writer starts a new segment once the
// current one passes Options.SegmentSize, so that no file grows without bound and a reader
// can begin at any segment: a frame opens only at its own seq, so the name of a segment
// cannot lie about where it starts without every frame in it failing.

// DefaultSegmentSize is where the writer starts a new segment: about 300,000 records.
const DefaultSegmentSize = 64 << 20

const (
	segPrefix = "audit-"
	segSuffix = ".log"
	segDigits = 20
)

// segment is one file of the log.
type segment struct {
	first uint64 // seq of its first record
	path  string
}

// segName names the segment whose first record is first.
func segName(first uint64) string {
	if first == 1 {
		return logName
	}
	return fmt.Sprintf("%s%0*d%s", segPrefix, segDigits, first, segSuffix)
}

// parseSegName returns the first seq of a segment's file name, or false for another name.
func parseSegName(name string) (uint64, bool) {
	if name == logName {
		return 1, true
	}
	digits, ok := strings.CutPrefix(name, segPrefix)
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, segSuffix)
	if !ok || len(digits) != segDigits {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n < 2 {
		return 0, false
	}
	return n, true
}

// listSegments returns the segments in dir in order. Other files are ignored.
func listSegments(dir string) ([]segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list audit segments: %w", err)
	}
	var segs []segment
	for _, e := range entries {
		first, ok := parseSegName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		segs = append(segs, segment{first: first, path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(segs, func(a, b segment) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	return segs, nil
}

// findSegment returns the segment of segs starting at first.
func findSegment(segs []segment, first uint64) (int, bool) {
	return slices.BinarySearchFunc(segs, first, func(s segment, first uint64) int {
		switch {
		case s.first < first:
			return -1
		case s.first > first:
			return 1
		}
		return 0
	})
}

// errNoLog is returned when a folder holds no segment at all.
var errNoLog = errors.New("the audit folder holds no log")
