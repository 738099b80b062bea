package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// smbTargets are the two Samba targets: Samba over a plain folder, and Samba over a dsh
// share, both from the smb.conf `dsh smb config` writes.
var smbTargets = []string{"smb-plain", "smb-dsh"}

// smbBed is smbd in front of a plain folder and the dsh mounts, with the member's account.
type smbBed struct {
	t       *testbed
	port    string
	auth    string
	account string
	made    bool // the account was made for the benchmark and is removed after it
	smbd    *exec.Cmd
	src     string // the file put and got
	small   string // a folder of small files, put in one go
	share   map[string]string
	prefix  map[string]string
}

var smbPasswordRe = regexp.MustCompile(`(?m)^password: (\S+)$`)

// setupSMB starts smbd on a loopback port with the [S] and [Q] shares of dsh smb config
// and a [plain] share over a plain folder with the same settings.
func (t *testbed) setupSMB() (*smbBed, error) {
	b := &smbBed{t: t, share: map[string]string{"smb-plain": "plain", "smb-dsh": "S"},
		prefix: map[string]string{"smb-plain": "", "smb-dsh": "bench/"}}
	// Samba maps an SMB user to a Unix account.
	if u, err := user.LookupId(strconv.Itoa(t.c.uid)); err == nil {
		b.account = u.Username
	} else {
		b.account = "dshbench" + strconv.Itoa(t.c.uid)
		if out, err := exec.Command("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-u", strconv.Itoa(t.c.uid), b.account).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("useradd: %v: %s", err, out)
		}
		b.made = true
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	_, b.port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()
	state := filepath.Join(t.work, "samba")
	conf := filepath.Join(state, "smb.conf")
	if _, err := t.dsh(0, "", "smb", "config", "--group", filepath.Join(t.work, "S"), "--arrivals", filepath.Join(t.work, "Q"),
		"--listen", "127.0.0.1", "--port", b.port, "--state", state, "--dsh", t.c.bin, "--out", conf); err != nil {
		return nil, err
	}
	plain, err := t.mkdir("smb-plain", t.c.uid)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	// The same share settings as [S], over a plain folder, without the tree-connect check
	// (which is part of what dsh costs).
	fmt.Fprintf(f, "\n[plain]\n  path = %s\n  read only = no\n  create mask = 0660\n  directory mask = 0770\n", plain)
	f.Close()
	out, err := t.dsh(t.c.uid, "", "smb", "password")
	if err != nil {
		return nil, err
	}
	m := smbPasswordRe.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no password in %q", out)
	}
	b.auth = filepath.Join(state, "auth")
	if err := os.WriteFile(b.auth, []byte("username = "+b.account+"\npassword = "+m[1]+"\n"), 0o600); err != nil {
		return nil, err
	}
	b.smbd = exec.Command("smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", conf)
	logf, err := os.Create(filepath.Join(state, "smbd.log"))
	if err != nil {
		return nil, err
	}
	b.smbd.Stdout, b.smbd.Stderr = logf, logf
	// Its own process group: smbd signals its whole group when it stops.
	b.smbd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.smbd.Start(); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+b.port, time.Second); err == nil {
			c.Close()
			break
		} else if i > 200 {
			return nil, fmt.Errorf("smbd did not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.src = filepath.Join(t.work, "smb-src.bin")
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > %s", t.c.smbSize, b.src)).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make the SMB source: %v: %s", err, out)
	}
	b.small = filepath.Join(t.work, "smb-small")
	if err := os.Mkdir(b.small, 0o755); err != nil {
		return nil, err
	}
	block := bytes.Repeat([]byte("x"), 4096)
	for i := 0; i < t.c.smbFiles; i++ {
		if err := os.WriteFile(filepath.Join(b.small, fmt.Sprintf("f%05d", i)), block, 0o644); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// client runs smbclient commands on a target's share and returns how long it took.
func (b *smbBed) client(target, commands string) (time.Duration, error) {
	start := time.Now()
	cmd := exec.Command("smbclient", "//127.0.0.1/"+b.share[target], "-p", b.port, "-A", b.auth, "-c", commands)
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil || bytes.Contains(out, []byte("NT_STATUS_")) {
		return 0, fmt.Errorf("smbclient %s on %s: %v: %s", commands, target, err, strings.TrimSpace(string(out)))
	}
	return d, nil
}

// run measures the SMB rows once on target: sequential write and read (MB/s) and small
// files put (files/s).
func (b *smbBed) run(target string, run int) (write, read, files float64, err error) {
	p := b.prefix[target]
	size := float64(b.t.c.smbSize)
	d, err := b.client(target, "put "+b.src+" "+p+"smb.bin")
	if err != nil {
		return
	}
	write = size / 1e6 / d.Seconds()
	b.t.dropCaches()
	if d, err = b.client(target, "get "+p+"smb.bin /dev/null"); err != nil {
		return
	}
	read = size / 1e6 / d.Seconds()
	dir := fmt.Sprintf("%ssmall%d", p, run)
	if d, err = b.client(target, "mkdir "+dir+"; cd "+dir+"; lcd "+b.small+"; prompt; mput *"); err != nil {
		return
	}
	files = float64(b.t.c.smbFiles) / d.Seconds()
	_, err = b.client(target, "del "+p+"smb.bin")
	return
}

func (b *smbBed) teardown() {
	if b.smbd != nil && b.smbd.Process != nil {
		b.smbd.Process.Signal(syscall.SIGTERM)
		b.smbd.Wait()
	}
	if b.made {
		exec.Command("userdel", "-f", b.account).Run()
	}
}

// smbReport is the Markdown table of the SMB rows.
func smbReport(c config, rows []*row) string {
	var s strings.Builder
	fmt.Fprintf(&s, "SMB through Samba (smbclient on the same host, SMB3 encrypted, the smb.conf of dsh smb config); medians of %d runs.\n\n", c.runs)
	s.WriteString("| workload | unit | Samba over a plain folder | Samba over dsh | dsh/plain |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		p, d := median(r.vals["smb-plain"]), median(r.vals["smb-dsh"])
		ratio := "–"
		if p > 0 && d > 0 {
			ratio = fmt.Sprintf("%.2f", d/p)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", r.name, r.unit, fmtNum(p), fmtNum(d), ratio)
	}
	return s.String()
}
