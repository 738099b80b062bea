//go:build race

package content

// raceEnabled shortens the tests that stream much data: the race detector slows every
// copy tenfold, and the races they could find show up in far less data.
const raceEnabled = true
