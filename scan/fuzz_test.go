package scan

import (
	"strings"
	"testing"
)

// FuzzVerdict: no answer from the socket but exactly "stream: OK" is ever clean, and no
// answer makes the parser fail in any other way than with an error.
func FuzzVerdict(f *testing.F) {
	for _, s := range []string{"stream: OK", "stream: Eicar-Test-Signature FOUND", "INSTREAM size limit exceeded. ERROR",
		"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND", "stream: Heuristics.Encrypted.Zip FOUND", "stream: OK FOUND",
		"stream:  FOUND", "", "PONG", "stream: OK\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		v, err := verdictOf(reply)
		if err != nil {
			if v.Result != "" {
				t.Fatalf("%q: an error with a verdict %+v", reply, v)
			}
			return
		}
		switch v.Result {
		case Clean:
			if reply != "stream: OK" {
				t.Fatalf("%q taken for clean", reply)
			}
		case Infected, Held:
			if v.Result == Infected && (v.Signature == "" || strings.ContainsAny(v.Signature, "\n\r\x00")) {
				t.Fatalf("%q: infected without a usable name: %+v", reply, v)
			}
		default:
			t.Fatalf("%q: unknown result %+v", reply, v)
		}
	})
}
