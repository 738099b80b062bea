package pskc

import (
	"os"
	"testing"
)

// FuzzParsePSKC: no input makes the reader panic, and whatever it accepts is a valid seed.
func FuzzParsePSKC(f *testing.F) {
	for _, name := range []string{"rfc6030-figure2.xml", "rfc6030-figure5.xml", "rfc6030-figure6.xml"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}
	f.Add([]byte(`<KeyContainer Version="1.0"><KeyPackage><Key Id="1" Algorithm="x:totp"><Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret><TimeInterval><PlainValue>60</PlainValue></TimeInterval></Data></Key></KeyPackage></KeyContainer>`), false)
	f.Fuzz(func(t *testing.T, doc []byte, withKey bool) {
		var key []byte
		if withKey {
			key = rfcKey
		}
		seeds, err := ParsePSKC(doc, key)
		if err != nil {
			if seeds != nil {
				t.Fatal("seeds returned with an error")
			}
			return
		}
		checkAccepted(t, seeds)
	})
}

// FuzzParseCSV is FuzzParsePSKC for the CSV format.
func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("serial,seed\nOATH1,3132333435363738393031323334353637383930\n"))
	f.Add([]byte("OATH2,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,totp,8,60\n# c\nOATH3,hex:3132333435363738393031323334353637383930,hotp,6,,5"))
	f.Add([]byte("\"a\"\"b\",c\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		seeds, err := ParseCSV(doc)
		if err != nil {
			if seeds != nil {
				t.Fatal("seeds returned with an error")
			}
			return
		}
		checkAccepted(t, seeds)
	})
}

func checkAccepted(t *testing.T, seeds []Seed) {
	t.Helper()
	if len(seeds) == 0 {
		t.Fatal("accepted a file without seeds")
	}
	seen := map[string]bool{}
	for _, s := range seeds {
		c := s
		if err := c.check("accepted"); err != nil {
			t.Fatalf("accepted an invalid seed: %v", err)
		}
		if seen[s.Serial] {
			t.Fatalf("accepted serial %s twice", s.Serial)
		}
		seen[s.Serial] = true
	}
}
