package pskc

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"dsh/pskc/pskctest"
)

// rfcSecret is the secret of RFC 4226's appendix D and of RFC 6030's figures 5 and 6.
const rfcSecret = "12345678901234567890"

var (
	rfcKey    = mustHex("12345678901234567890123456789012")
	rfcMACKey = mustHex("1122334455667788990011223344556677889900")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noSecretIn fails when err's message carries secret in any common encoding.
func noSecretIn(t *testing.T, err error, secret []byte) {
	t.Helper()
	if err == nil || len(secret) == 0 {
		return
	}
	msg := strings.ToLower(err.Error())
	for _, enc := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret),
		base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)} {
		if strings.Contains(msg, strings.ToLower(enc)) {
			t.Fatalf("error message carries the seed: %q", err)
		}
	}
}

func TestRFC6030Figure5Plain(t *testing.T) {
	seeds, err := ParsePSKC(readFile(t, "rfc6030-figure5.xml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The second key package is the PIN, which dsh does not import.
	if len(seeds) != 1 {
		t.Fatalf("got %d seeds, want the HOTP key only", len(seeds))
	}
	s := seeds[0]
	if s.Serial != "987654321" || s.Kind != HOTP || s.Digits != 8 || s.Counter != 0 || s.Algorithm != SHA1 || s.Manufacturer != "Manufacturer" {
		t.Fatalf("seed %v", s)
	}
	if string(s.Secret) != rfcSecret {
		t.Fatal("the secret is not RFC 6030's")
	}
}

func TestRFC6030Figure6Encrypted(t *testing.T) {
	doc := readFile(t, "rfc6030-figure6.xml")
	seeds, err := ParsePSKC(doc, rfcKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(seeds) != 1 || seeds[0].Serial != "987654321" || seeds[0].Kind != HOTP || seeds[0].Digits != 8 {
		t.Fatalf("seeds %v", seeds)
	}
	if string(seeds[0].Secret) != rfcSecret {
		t.Fatal("figure 6 did not decrypt to RFC 6030's secret")
	}
	seeds[0].Wipe()
	if !bytes.Equal(seeds[0].Secret, make([]byte, len(rfcSecret))) {
		t.Fatal("Wipe left the secret")
	}

	// Without the key: a clear error naming the key, nothing imported.
	_, err = ParsePSKC(doc, nil)
	if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "Pre-shared-key") {
		t.Fatalf("no key: %v", err)
	}
	// A key of the wrong length.
	if _, err = ParsePSKC(doc, rfcKey[:15]); !errors.Is(err, ErrKey) {
		t.Fatalf("short key: %v", err)
	}
	// Another AES-128 key: the MAC key decrypts to something else, and the MAC fails
	// before anything is decrypted with it.
	wrong := bytes.Clone(rfcKey)
	wrong[0] ^= 1
	_, err = ParsePSKC(doc, wrong)
	if !errors.Is(err, ErrMAC) {
		t.Fatalf("wrong key: %v", err)
	}
	noSecretIn(t, err, []byte(rfcSecret))
}

func TestTamperedFileRefused(t *testing.T) {
	doc := readFile(t, "rfc6030-figure6.xml")
	const ct = "AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGv"
	cases := map[string][]byte{
		// One bit of the secret's ciphertext (CBC would decrypt it to a changed secret).
		"ciphertext": pskctest.ReplaceFirst(doc, ct, "AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGw"),
		// The IV (a CBC bit flip in the first block of plaintext).
		"iv": pskctest.ReplaceFirst(doc, ct, "AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGv"[:2]+"F"+ct[3:]),
		// The MAC itself.
		"mac": pskctest.ReplaceFirst(doc, "Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Tu+NvtQfmvfJzF6bmQiJqoLRExc="),
		// The MAC key.
		"mac key": pskctest.ReplaceFirst(doc, "ESIzRFVmd4iZABEiM0RVZgKn", "ESIzRFVmd4iZABEiM0RVZgKo"),
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			seeds, err := ParsePSKC(d, rfcKey)
			if !errors.Is(err, ErrMAC) || seeds != nil {
				t.Fatalf("tampered %s: %v, %d seeds", name, err, len(seeds))
			}
			if !strings.Contains(err.Error(), "changed") {
				t.Fatalf("the error does not say the file was changed: %v", err)
			}
			noSecretIn(t, err, []byte(rfcSecret))
		})
	}
	// An encrypted value without a MAC is refused, not decrypted unauthenticated.
	noMAC := bytes.Replace(doc, []byte("<ValueMAC>Su+NvtQfmvfJzF6bmQiJqoLRExc=</ValueMAC>"), nil, 1)
	if _, err := ParsePSKC(noMAC, rfcKey); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "ValueMAC") {
		t.Fatalf("no ValueMAC: %v", err)
	}
	// A file that encrypts but carries no MAC key at all.
	start, end := bytes.Index(doc, []byte("<MACMethod")), bytes.Index(doc, []byte("</MACMethod>"))+len("</MACMethod>")
	noKey := append(bytes.Clone(doc[:start]), doc[end:]...)
	if _, err := ParsePSKC(noKey, rfcKey); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "no MAC key") {
		t.Fatalf("no MAC key: %v", err)
	}
}

func TestRFC6030Figure2ShortSecretRefused(t *testing.T) {
	_, err := ParsePSKC(readFile(t, "rfc6030-figure2.xml"), nil)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "32 bits") || !strings.Contains(err.Error(), "12345678") {
		t.Fatalf("figure 2's 32-bit secret: %v", err)
	}
}

func TestWrittenFilesRoundTrip(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	toks := []pskctest.Token{
		{Serial: "TOTP0001", TOTP: true, Secret: secret, Digits: 8, Period: 60, Suite: "HMAC-SHA256"},
		{Serial: "HOTP0002", Secret: secret, Digits: 6, Counter: 42},
	}
	for _, key := range [][]byte{nil, rfcKey, bytes.Repeat([]byte{7}, 32)} {
		doc, err := pskctest.Write(toks, key, rfcMACKey)
		if err != nil {
			t.Fatal(err)
		}
		seeds, err := Parse(doc, "", key)
		if err != nil {
			t.Fatalf("key %d bytes: %v", len(key), err)
		}
		want := []string{"TOTP0001 totp, 8 digits, SHA256, 60 s step", "HOTP0002 hotp, 6 digits, SHA1, counter 42"}
		for i, s := range seeds {
			if s.String() != want[i] || !bytes.Equal(s.Secret, secret) {
				t.Fatalf("key %d bytes: seed %d is %v", len(key), i, s)
			}
		}
	}
}

func TestPSKCRefusals(t *testing.T) {
	good := []byte("0123456789abcdef0123")
	write := func(toks ...pskctest.Token) []byte {
		d, err := pskctest.Write(toks, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cases := map[string]struct {
		doc  []byte
		want string
	}{
		"not xml":       {[]byte("serial,seed"), "not a PSKC key container"},
		"other root":    {[]byte(`<KeyBox Version="1.0"/>`), "not a PSKC key container"},
		"version":       {[]byte(`<KeyContainer Version="2.0"><KeyPackage/></KeyContainer>`), "version"},
		"empty":         {[]byte(`<KeyContainer Version="1.0"></KeyContainer>`), "no HOTP or TOTP key"},
		"duplicate":     {write(pskctest.Token{Serial: "A1", Secret: good}, pskctest.Token{Serial: "A1", Secret: good}), "serial A1 is also at"},
		"bad serial":    {write(pskctest.Token{Serial: "a b", Secret: good}), "serial"},
		"digits":        {write(pskctest.Token{Serial: "A1", Secret: good, Digits: 10}), "10 digits"},
		"suite":         {write(pskctest.Token{Serial: "A1", Secret: good, Suite: "HMAC-MD5"}), "suite"},
		"step":          {write(pskctest.Token{Serial: "A1", TOTP: true, Secret: good, Period: 3600}), "time step"},
		"counter+step":  {write(pskctest.Token{Serial: "A1", Secret: good, Period: 30}), "no time step"},
		"key for plain": {write(pskctest.Token{Serial: "A1", Secret: good}), "not encrypted"},
		"passphrase": {[]byte(`<KeyContainer Version="1.0"><EncryptionKey><DerivedKey/></EncryptionKey>
			<KeyPackage><Key Id="1" Algorithm="x:hotp"><Data><Secret><PlainValue>AA==</PlainValue></Secret></Data></Key></KeyPackage></KeyContainer>`), "passphrase"},
		"algorithm": {[]byte(`<KeyContainer Version="1.0"><KeyPackage><Key Id="k1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc#ocra">
			<Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret></Data></Key></KeyPackage></KeyContainer>`), "neither HOTP nor TOTP"},
		"start time": {[]byte(`<KeyContainer Version="1.0"><KeyPackage><Key Id="k1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp">
			<Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret><Time><PlainValue>5</PlainValue></Time></Data></Key></KeyPackage></KeyContainer>`), "Unix epoch"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var key []byte
			if name == "key for plain" {
				key = rfcKey
			}
			seeds, err := ParsePSKC(c.doc, key)
			if err == nil || !strings.Contains(err.Error(), c.want) || seeds != nil {
				t.Fatalf("got %v (%d seeds), want an error with %q", err, len(seeds), c.want)
			}
			noSecretIn(t, err, good)
		})
	}
}

func TestCSV(t *testing.T) {
	rfcHex := hex.EncodeToString([]byte(rfcSecret))
	rfcB32 := base32.StdEncoding.EncodeToString([]byte(rfcSecret))
	doc := "# seeds from the vendor\n" +
		"serial,seed,type,digits,step,counter\n" +
		"OATH0001, " + rfcHex + "\n" +
		"OATH0002," + strings.ToLower(rfcB32) + ",totp,8,60\n" +
		"\n" +
		"OATH0003,hex:" + rfcHex + ",hotp,6,30,17\n" +
		"OATH0004,base32:" + strings.TrimRight(rfcB32, "=") + ",TOTP,,,\n"
	seeds, err := ParseCSV([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"OATH0001 hotp, 6 digits, SHA1, counter 0",
		"OATH0002 totp, 8 digits, SHA1, 60 s step",
		"OATH0003 hotp, 6 digits, SHA1, counter 17",
		"OATH0004 totp, 6 digits, SHA1, 30 s step",
	}
	if len(seeds) != len(want) {
		t.Fatalf("got %d seeds", len(seeds))
	}
	for i, s := range seeds {
		if s.String() != want[i] || string(s.Secret) != rfcSecret {
			t.Fatalf("seed %d: %v", i, s)
		}
	}

	bad := map[string]string{
		"OATH1\n":                                   "2 fields", // only a serial: 1 field
		"OATH1," + rfcHex + ",sms\n":                "neither hotp nor totp",
		"OATH1,zz" + rfcHex + "\n":                  "neither hex nor base32",
		"OATH1,hex:" + rfcB32 + "\n":                "not hex",
		"OATH1," + rfcHex + ",totp,8,60,5\n":        "no counter",
		"OATH1," + rfcHex + "\nOATH1," + rfcHex:     "also at line 1",
		"OATH1,3132,hotp\n":                         "16 bits",
		"OATH1," + rfcHex + ",hotp,six\n":           "digits",
		"OATH 1," + rfcHex + "\n":                   "serial",
		"OATH1,\"" + rfcHex + "\n":                  "line 1",
		"a,b,c,d,e,f,g\n":                           "7 fields",
		"OATH1," + rfcHex + ",totp,6,-1\n":          "time step",
		"OATH1," + rfcHex + ",hotp,6,,notanumber\n": "counter",
	}
	for in, want := range bad {
		seeds, err := ParseCSV([]byte(in))
		if in == "OATH1\n" {
			want = "1 fields"
		}
		if err == nil || !strings.Contains(err.Error(), want) || seeds != nil {
			t.Errorf("%q: got %v, want an error with %q", in, err, want)
		}
		noSecretIn(t, err, []byte(rfcSecret))
	}
	if _, err := Parse([]byte("OATH1,"+rfcHex), FormatCSV, rfcKey); err == nil {
		t.Fatal("a key was accepted for a CSV file")
	}
}

// TestSeedNeverPrinted: a Seed printed in every way, and logged, shows no secret.
func TestSeedNeverPrinted(t *testing.T) {
	s := Seed{Serial: "OATH0001", Kind: HOTP, Secret: []byte(rfcSecret), Digits: 6, Algorithm: SHA1}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("import", "seed", s, "seeds", []Seed{s})
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("import", "seed", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), fmt.Sprint([]Seed{s}), fmt.Sprintf("%+v", &s), logged.String()} {
		noSecretIn(t, errors.New(out), []byte(rfcSecret))
		if strings.Contains(out, "49 50 51") || strings.Contains(out, "[49 50") {
			t.Fatalf("the secret's bytes were printed: %s", out)
		}
	}
}
