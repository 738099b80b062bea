// Package pskctest writes PSKC (RFC 6030) key containers, plain or encrypted with a
// pre-shared AES key and authenticated with HMAC-SHA1, for tests of the importer. It is
// never used by the daemon: dsh reads seed files, it does not make them.
package pskctest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"strings"
)

// Token is one key package to write.
type Token struct {
	Serial  string
	TOTP    bool // time-based; HOTP otherwise
	Secret  []byte
	Digits  int // 0 writes no ResponseFormat
	Counter uint64
	Period  int // TOTP time step; 0 writes none
	// Suite, when set, is written as the algorithm's Suite (e.g. "HMAC-SHA256").
	Suite string
}

// Write returns a key container holding toks. With key nil their secrets are plain;
// otherwise they are encrypted with AES-CBC under key (16, 24 or 32 bytes) and each
// carries an HMAC-SHA1 ValueMAC under macKey, which the file carries encrypted under key.
func Write(toks []Token, key, macKey []byte) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">` + "\n")
	alg := fmt.Sprintf("http://www.w3.org/2001/04/xmlenc#aes%d-cbc", 8*len(key))
	if key != nil {
		mk, err := Encrypt(key, macKey)
		if err != nil {
			return nil, err
		}
		b.WriteString("  <EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>\n")
		fmt.Fprintf(&b, `  <MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"><MACKey><xenc:EncryptionMethod Algorithm="%s"/><xenc:CipherData><xenc:CipherValue>%s</xenc:CipherValue></xenc:CipherData></MACKey></MACMethod>`+"\n",
			alg, base64.StdEncoding.EncodeToString(mk))
	}
	for _, t := range toks {
		algo := "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
		if t.TOTP {
			algo = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
		}
		fmt.Fprintf(&b, "  <KeyPackage>\n    <DeviceInfo><Manufacturer>Test</Manufacturer><SerialNo>%s</SerialNo></DeviceInfo>\n", t.Serial)
		fmt.Fprintf(&b, "    <Key Id=\"%s\" Algorithm=\"%s\">\n", t.Serial, algo)
		if t.Digits != 0 || t.Suite != "" {
			b.WriteString("      <AlgorithmParameters>")
			if t.Suite != "" {
				fmt.Fprintf(&b, "<Suite>%s</Suite>", t.Suite)
			}
			if t.Digits != 0 {
				fmt.Fprintf(&b, `<ResponseFormat Length="%d" Encoding="DECIMAL"/>`, t.Digits)
			}
			b.WriteString("</AlgorithmParameters>\n")
		}
		b.WriteString("      <Data>\n        <Secret>")
		if key == nil {
			fmt.Fprintf(&b, "<PlainValue>%s</PlainValue>", base64.StdEncoding.EncodeToString(t.Secret))
		} else {
			ct, err := Encrypt(key, t.Secret)
			if err != nil {
				return nil, err
			}
			m := hmac.New(sha1.New, macKey)
			m.Write(ct)
			fmt.Fprintf(&b, `<EncryptedValue><xenc:EncryptionMethod Algorithm="%s"/><xenc:CipherData><xenc:CipherValue>%s</xenc:CipherValue></xenc:CipherData></EncryptedValue><ValueMAC>%s</ValueMAC>`,
				alg, base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(m.Sum(nil)))
		}
		b.WriteString("</Secret>\n")
		if !t.TOTP {
			fmt.Fprintf(&b, "        <Counter><PlainValue>%d</PlainValue></Counter>\n", t.Counter)
		}
		if t.Period != 0 {
			fmt.Fprintf(&b, "        <TimeInterval><PlainValue>%d</PlainValue></TimeInterval>\n", t.Period)
		}
		b.WriteString("      </Data>\n    </Key>\n  </KeyPackage>\n")
	}
	b.WriteString("</KeyContainer>\n")
	return b.Bytes(), nil
}

// Encrypt returns a random IV followed by plaintext PKCS#7-padded and encrypted with
// AES-CBC under key, as XML Encryption's CipherValue holds it.
func Encrypt(key, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	n := aes.BlockSize - len(plaintext)%aes.BlockSize
	padded := append(bytes.Clone(plaintext), bytes.Repeat([]byte{byte(n)}, n)...)
	out := make([]byte, aes.BlockSize+len(padded))
	if _, err := rand.Read(out[:aes.BlockSize]); err != nil {
		return nil, err
	}
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(out[aes.BlockSize:], padded)
	return out, nil
}

// ReplaceFirst returns doc with the first occurrence of old replaced: a test's way to
// tamper with one value.
func ReplaceFirst(doc []byte, old, new string) []byte {
	return []byte(strings.Replace(string(doc), old, new, 1))
}
