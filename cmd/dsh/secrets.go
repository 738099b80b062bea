package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/term"
)

// secretReader hands out secrets one per line: prompted for without echo on a terminal, read
// from stdin otherwise (in the order the command documents).
type secretReader struct {
	in  *bufio.Reader
	tty bool
}

func newSecretReader() *secretReader {
	return &secretReader{in: bufio.NewReader(os.Stdin), tty: term.IsTerminal(int(os.Stdin.Fd()))}
}

// read returns the next secret; prompt names it on a terminal and in the error when missing.
func (s *secretReader) read(prompt string) ([]byte, error) {
	if s.tty {
		fmt.Fprintf(os.Stderr, "%s: ", prompt)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", prompt, err)
		}
		return b, nil
	}
	line, err := s.in.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return nil, usagef("expected the %s on standard input, one per line", prompt)
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// readSecretFile reads a secret kept in a file (first line), e.g. the unseal passphrase.
// It refuses a file that another user owns or that its group or others may read or
// write: a passphrase anyone on the host can read protects nothing.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read passphrase file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read passphrase file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("passphrase file %s is open to its group or to others (mode %04o); chmod 600 it", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("passphrase file %s belongs to uid %d, not to this user (uid %d)", path, st.Uid, os.Geteuid())
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read passphrase file: %w", err)
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		for j := i; j < len(b); j++ {
			b[j] = 0
		}
		b = b[:i]
	}
	b = bytes.TrimRight(b, "\r")
	if len(b) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return b, nil
}
