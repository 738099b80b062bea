package pskc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// ErrKey is returned for an encrypted file read without its pre-shared key, or with a key
// of the wrong length.
var ErrKey = errors.New("pre-shared key")

// ErrMAC is returned when a MAC does not match: the file was changed after the vendor made
// it, or the pre-shared key is not the one it was made with. Nothing of such a file is
// decrypted or imported.
var ErrMAC = errors.New("the file does not authenticate with this key: it was changed, or the key is not the one it was made with")

// The XML of RFC 6030, as far as dsh reads it. Elements are matched by local name, so
// both the default namespace and a "pskc:" prefix work.
type container struct {
	XMLName       xml.Name `xml:"KeyContainer"`
	Version       string   `xml:"Version,attr"`
	EncryptionKey *struct {
		KeyName    string    `xml:"KeyName"`
		DerivedKey *struct{} `xml:"DerivedKey"`
	} `xml:"EncryptionKey"`
	MACMethod *struct {
		Algorithm string    `xml:"Algorithm,attr"`
		MACKey    *encValue `xml:"MACKey"`
	} `xml:"MACMethod"`
	// MACAlgorithm is the draft's form of MACMethod, without a MAC key of its own.
	MACAlgorithm string       `xml:"MACAlgorithm"`
	Packages     []keyPackage `xml:"KeyPackage"`
}

type keyPackage struct {
	DeviceInfo struct {
		Manufacturer string `xml:"Manufacturer"`
		SerialNo     string `xml:"SerialNo"`
	} `xml:"DeviceInfo"`
	Key *struct {
		ID         string `xml:"Id,attr"`
		Algorithm  string `xml:"Algorithm,attr"`
		Parameters struct {
			Suite          string `xml:"Suite"`
			ResponseFormat struct {
				Length   int    `xml:"Length,attr"`
				Encoding string `xml:"Encoding,attr"`
			} `xml:"ResponseFormat"`
		} `xml:"AlgorithmParameters"`
		Data struct {
			Secret       *value `xml:"Secret"`
			Counter      *value `xml:"Counter"`
			Time         *value `xml:"Time"`
			TimeInterval *value `xml:"TimeInterval"`
		} `xml:"Data"`
	} `xml:"Key"`
}

type value struct {
	PlainValue     *string   `xml:"PlainValue"`
	EncryptedValue *encValue `xml:"EncryptedValue"`
	ValueMAC       string    `xml:"ValueMAC"`
}

type encValue struct {
	Method struct {
		Algorithm string `xml:"Algorithm,attr"`
	} `xml:"EncryptionMethod"`
	CipherValue string `xml:"CipherData>CipherValue"`
}

const (
	algHOTPSuffix = "hotp"
	algTOTPSuffix = "totp"
	algPINSuffix  = "pin"
)

// The encryption and MAC algorithms of RFC 6030 section 6.1 that dsh accepts.
var (
	cbcKeySizes = map[string]int{
		"http://www.w3.org/2001/04/xmlenc#aes128-cbc": 16,
		"http://www.w3.org/2001/04/xmlenc#aes192-cbc": 24,
		"http://www.w3.org/2001/04/xmlenc#aes256-cbc": 32,
	}
	macHashes = map[string]func() hash.Hash{
		"http://www.w3.org/2000/09/xmldsig#hmac-sha1":        sha1.New,
		"http://www.w3.org/2001/04/xmldsig-more#hmac-sha224": sha256.New224,
		"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256": sha256.New,
		"http://www.w3.org/2001/04/xmldsig-more#hmac-sha384": sha512.New384,
		"http://www.w3.org/2001/04/xmldsig-more#hmac-sha512": sha512.New,
	}
)

// decrypter holds what an encrypted file needs: the pre-shared key and the MAC key the
// file carries (encrypted under it).
type decrypter struct {
	key    []byte
	mac    func() hash.Hash
	macKey []byte
}

func (d *decrypter) wipe() {
	if d != nil {
		clear(d.macKey)
	}
}

// ParsePSKC reads an RFC 6030 key container. key is the pre-shared key its secrets are
// encrypted with (AES-128, -192 or -256 by its length), nil for a file of plain values.
// Every encrypted value must carry a MAC, which is checked before the value is decrypted;
// a file with one value that fails is refused whole (ErrMAC). Key packages of PINs are
// skipped: dsh users choose their own PIN.
func ParsePSKC(data []byte, key []byte) ([]Seed, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: the file has %d bytes; at most %d are read", ErrFormat, len(data), MaxFileBytes)
	}
	var c container
	dec := xml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: not a PSKC key container: %s", ErrFormat, xmlProblem(err))
	}
	if c.Version != "1.0" {
		return nil, fmt.Errorf("%w: PSKC version %q; dsh reads version 1.0 (RFC 6030)", ErrFormat, c.Version)
	}
	if len(c.Packages) > MaxSeeds {
		return nil, fmt.Errorf("%w: %d key packages; at most %d are imported at once", ErrFormat, len(c.Packages), MaxSeeds)
	}
	d, err := c.decrypter(key)
	if err != nil {
		return nil, err
	}
	defer d.wipe()
	var seeds []Seed
	var where []string
	for i, p := range c.Packages {
		s, skip, err := p.seed(i, d)
		if err != nil {
			WipeAll(seeds)
			return nil, err
		}
		if !skip {
			seeds = append(seeds, s)
			where = append(where, s.where(i))
		}
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: the file holds no HOTP or TOTP key", ErrFormat)
	}
	if err := checkAll(seeds, func(i int) string { return where[i] }); err != nil {
		return nil, err
	}
	return seeds, nil
}

func (s Seed) where(i int) string {
	return fmt.Sprintf("key package %d (serial %s)", i+1, s.Serial)
}

// decrypter prepares decryption for a file that declares encryption; nil for a plain file.
func (c *container) decrypter(key []byte) (*decrypter, error) {
	if c.EncryptionKey == nil {
		if len(key) > 0 {
			return nil, fmt.Errorf("%w: a key was given, but the file's secrets are not encrypted", ErrKey)
		}
		return nil, nil
	}
	if c.EncryptionKey.DerivedKey != nil {
		return nil, fmt.Errorf("%w: the file's key is derived from a passphrase (PBKDF2); dsh imports files encrypted with a pre-shared AES key", ErrFormat)
	}
	if len(key) == 0 {
		name := c.EncryptionKey.KeyName
		if name == "" {
			name = "unnamed"
		}
		return nil, fmt.Errorf("%w: the file's secrets are encrypted with a pre-shared key (%q): give it with --key-file", ErrKey, name)
	}
	if len(key) != 16 && len(key) != 24 && len(key) != 32 {
		return nil, fmt.Errorf("%w: %d bytes; an AES key has 16, 24 or 32", ErrKey, len(key))
	}
	if c.MACMethod == nil || c.MACMethod.MACKey == nil {
		if c.MACAlgorithm != "" {
			return nil, fmt.Errorf("%w: the file uses the draft's MACAlgorithm without a MAC key of its own; ask the vendor for an RFC 6030 file", ErrFormat)
		}
		return nil, fmt.Errorf("%w: the file's secrets are encrypted but it has no MAC key: dsh does not import secrets it cannot authenticate", ErrFormat)
	}
	mac, ok := macHashes[strings.TrimSpace(c.MACMethod.Algorithm)]
	if !ok {
		return nil, fmt.Errorf("%w: MAC algorithm %q is not HMAC-SHA1, -SHA224, -SHA256, -SHA384 or -SHA512", ErrFormat, c.MACMethod.Algorithm)
	}
	d := &decrypter{key: key, mac: mac}
	// The MAC key is not authenticated itself: a changed or wrongly decrypted MAC key makes
	// every value's MAC fail, which is checked before any value is decrypted.
	mk, err := d.decrypt(c.MACMethod.MACKey)
	if err != nil {
		return nil, fmt.Errorf("the MAC key: %w", err)
	}
	if len(mk) < 16 {
		clear(mk)
		return nil, fmt.Errorf("%w", ErrMAC)
	}
	d.macKey = mk
	return d, nil
}

// decrypt reverses AES-CBC with the pre-shared key: the cipher value is the IV followed
// by the ciphertext, PKCS#7 padded (XML Encryption).
func (d *decrypter) decrypt(v *encValue) ([]byte, error) {
	size, ok := cbcKeySizes[strings.TrimSpace(v.Method.Algorithm)]
	if !ok {
		return nil, fmt.Errorf("%w: encryption algorithm %q is not AES-CBC", ErrFormat, v.Method.Algorithm)
	}
	if size != len(d.key) {
		return nil, fmt.Errorf("%w: the file uses AES with a %d-byte key, the key given has %d bytes", ErrKey, size, len(d.key))
	}
	raw, err := decodeB64(v.CipherValue)
	if err != nil {
		return nil, fmt.Errorf("%w: a CipherValue is not base64", ErrFormat)
	}
	if len(raw) < 2*aes.BlockSize || len(raw)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: a CipherValue is not an IV and whole AES blocks", ErrFormat)
	}
	block, err := aes.NewCipher(d.key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	iv, ct := raw[:aes.BlockSize], raw[aes.BlockSize:]
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n == 0 || n > aes.BlockSize {
		clear(pt)
		return nil, ErrMAC
	}
	for _, b := range pt[len(pt)-n:] {
		if int(b) != n {
			clear(pt)
			return nil, ErrMAC
		}
	}
	out := bytes.Clone(pt[:len(pt)-n])
	clear(pt)
	return out, nil
}

// open returns the bytes of a value: a plain one as it is, an encrypted one after its MAC
// (over IV and ciphertext, RFC 6030 section 6.1.1) was checked. plain decodes a
// PlainValue (base64 for secrets, decimal for numbers); width is the byte size of an
// encrypted number, 0 for a secret.
func (d *decrypter) open(v *value, what string) (plain string, enc []byte, err error) {
	switch {
	case v.PlainValue != nil && v.EncryptedValue != nil:
		return "", nil, fmt.Errorf("%w: %s is both plain and encrypted", ErrFormat, what)
	case v.PlainValue != nil:
		return strings.TrimSpace(*v.PlainValue), nil, nil
	case v.EncryptedValue == nil:
		return "", nil, fmt.Errorf("%w: %s has no value", ErrFormat, what)
	case d == nil:
		return "", nil, fmt.Errorf("%w: %s is encrypted, but the file names no encryption key", ErrFormat, what)
	}
	if strings.TrimSpace(v.ValueMAC) == "" {
		return "", nil, fmt.Errorf("%w: %s is encrypted without a ValueMAC: dsh does not import secrets it cannot authenticate", ErrFormat, what)
	}
	want, err := decodeB64(v.ValueMAC)
	if err != nil {
		return "", nil, fmt.Errorf("%w: the ValueMAC of %s is not base64", ErrFormat, what)
	}
	raw, err := decodeB64(v.EncryptedValue.CipherValue)
	if err != nil {
		return "", nil, fmt.Errorf("%w: the CipherValue of %s is not base64", ErrFormat, what)
	}
	m := hmac.New(d.mac, d.macKey)
	m.Write(raw)
	if !hmac.Equal(m.Sum(nil), want) {
		return "", nil, fmt.Errorf("%s: %w", what, ErrMAC)
	}
	pt, err := d.decrypt(v.EncryptedValue)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", what, err)
	}
	return "", pt, nil
}

// number reads a numeric value (counter, time step): decimal when plain, a big-endian
// integer when encrypted.
func (d *decrypter) number(v *value, what string) (uint64, error) {
	plain, enc, err := d.open(v, what)
	if err != nil {
		return 0, err
	}
	if enc != nil {
		if len(enc) == 0 || len(enc) > 8 {
			return 0, fmt.Errorf("%w: %s is not a number", ErrFormat, what)
		}
		var b [8]byte
		copy(b[8-len(enc):], enc)
		return binary.BigEndian.Uint64(b[:]), nil
	}
	n, err := strconv.ParseUint(plain, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s is not a number", ErrFormat, what)
	}
	return n, nil
}

// seed turns one key package into a Seed; skip is set for packages dsh does not import
// (PINs).
func (p keyPackage) seed(i int, d *decrypter) (Seed, bool, error) {
	k := p.Key
	if k == nil {
		return Seed{}, false, fmt.Errorf("%w: key package %d has no key", ErrFormat, i+1)
	}
	s := Seed{Serial: strings.TrimSpace(p.DeviceInfo.SerialNo), Manufacturer: strings.TrimSpace(p.DeviceInfo.Manufacturer)}
	if s.Serial == "" {
		s.Serial = strings.TrimSpace(k.ID)
	}
	where := s.where(i)
	alg := strings.ToLower(strings.TrimSpace(k.Algorithm))
	switch {
	case strings.HasSuffix(alg, algPINSuffix):
		return Seed{}, true, nil
	case strings.HasSuffix(alg, algHOTPSuffix):
		s.Kind = HOTP
	case strings.HasSuffix(alg, algTOTPSuffix):
		s.Kind = TOTP
	default:
		return Seed{}, false, fmt.Errorf("%w: %s: algorithm %q is neither HOTP nor TOTP", ErrFormat, where, k.Algorithm)
	}
	rf := k.Parameters.ResponseFormat
	if e := strings.ToUpper(strings.TrimSpace(rf.Encoding)); e != "" && e != "DECIMAL" {
		return Seed{}, false, fmt.Errorf("%w: %s: codes in %s; dsh reads decimal codes", ErrFormat, where, rf.Encoding)
	}
	s.Digits = rf.Length
	if suite := strings.ToUpper(k.Parameters.Suite); suite != "" {
		switch {
		case strings.Contains(suite, "SHA512"), strings.Contains(suite, "SHA-512"):
			s.Algorithm = SHA512
		case strings.Contains(suite, "SHA256"), strings.Contains(suite, "SHA-256"):
			s.Algorithm = SHA256
		case strings.Contains(suite, "SHA1"), strings.Contains(suite, "SHA-1"):
			s.Algorithm = SHA1
		default:
			return Seed{}, false, fmt.Errorf("%w: %s: suite %q names no SHA1, SHA256 or SHA512", ErrFormat, where, k.Parameters.Suite)
		}
	}
	if k.Data.Secret == nil {
		return Seed{}, false, fmt.Errorf("%w: %s has no secret", ErrFormat, where)
	}
	plain, enc, err := d.open(k.Data.Secret, where+": the secret")
	if err != nil {
		return Seed{}, false, err
	}
	if enc != nil {
		s.Secret = enc
	} else if s.Secret, err = decodeB64(plain); err != nil {
		return Seed{}, false, fmt.Errorf("%w: %s: the secret is not base64", ErrFormat, where)
	}
	fail := func(err error) (Seed, bool, error) {
		s.Wipe()
		return Seed{}, false, err
	}
	if k.Data.Counter != nil {
		if s.Counter, err = d.number(k.Data.Counter, where+": the counter"); err != nil {
			return fail(err)
		}
	}
	if k.Data.TimeInterval != nil {
		n, err := d.number(k.Data.TimeInterval, where+": the time interval")
		if err != nil {
			return fail(err)
		}
		if n == 0 || n > MaxPeriod {
			return fail(fmt.Errorf("%w: %s: time step of %d s; expected 1 to %d", ErrFormat, where, n, MaxPeriod))
		}
		s.Period = int(n)
	}
	if k.Data.Time != nil {
		t0, err := d.number(k.Data.Time, where+": the start time")
		if err != nil {
			return fail(err)
		}
		if t0 != 0 {
			return fail(fmt.Errorf("%w: %s: counts time from %d, not from the Unix epoch; dsh's time-based tokens start at 0", ErrFormat, where, t0))
		}
	}
	return s, false, nil
}

// decodeB64 reads base64 as XML carries it: standard alphabet, whitespace and line breaks
// anywhere.
func decodeB64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}

// xmlProblem describes a decoding error without quoting the file.
func xmlProblem(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("XML syntax error on line %d", se.Line)
	}
	var ue xml.UnmarshalError
	if errors.As(err, &ue) {
		return "unexpected XML: " + string(ue)
	}
	if errors.Is(err, errors.ErrUnsupported) {
		return "unsupported XML"
	}
	msg := err.Error()
	if strings.Contains(msg, "expected element type <KeyContainer>") {
		return "the root element is not KeyContainer"
	}
	if strings.Contains(msg, "CharsetReader") {
		return "the file is not UTF-8"
	}
	return "malformed XML"
}
