package smb

import (
	"regexp"
	"strings"
	"testing"
)

func TestRenderHoldsWhatDshNeeds(t *testing.T) {
	c := Config{GroupDir: "/srv/dsh/S", ArrivalsDir: "/srv/dsh/Q", Dsh: "/usr/bin/dsh", Socket: "/run/dsh/control.sock",
		Port: 4445, Listen: "127.0.0.1", StateDir: "/var/lib/dsh-samba"}
	out, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"[S]\n", "path = /srv/dsh/S\n", "[Q]\n", "path = /srv/dsh/Q\n",
		"root preexec = /usr/bin/dsh --socket /run/dsh/control.sock smb check --user %u --share %S --client %I\n",
		"root preexec close = yes\n", "vfs objects = streams_xattr\n", "store dos attributes = yes\n",
		"map archive = no\n", "oplocks = no\n", "smb2 leases = no\n", "server smb encrypt = required\n",
		"server min protocol = SMB3_00\n", "smb ports = 4445\n", "interfaces = 127.0.0.1\n",
		"passdb backend = tdbsam:/var/lib/dsh-samba/private/passdb.tdb\n", "kernel change notify = no\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("smb.conf lacks %q", want)
		}
	}
	if strings.Contains(out, "full_audit") && !strings.Contains(out, "full_audit module stays off") {
		t.Error("full_audit is configured")
	}
	if n := strings.Count(out, "root preexec ="); n != 2 {
		t.Errorf("%d shares with the check, want 2", n)
	}
	// Only the Group tree: no [Q].
	c.ArrivalsDir = ""
	if out, _ := c.Render(); strings.Contains(out, "[Q]") {
		t.Error("[Q] without an Arrivals mount")
	}
}

func TestRenderRefusesWhatWouldBreakTheFile(t *testing.T) {
	good := Config{GroupDir: "/srv/S", Dsh: "/usr/bin/dsh", Socket: "/run/dsh/control.sock"}
	for name, mutate := range map[string]func(*Config){
		"no tree":          func(c *Config) { c.GroupDir = "" },
		"relative":         func(c *Config) { c.GroupDir = "srv/S" },
		"line break":       func(c *Config) { c.GroupDir = "/srv/S\n[evil]" },
		"shell in dsh":     func(c *Config) { c.Dsh = "/usr/bin/dsh;reboot" },
		"substitution":     func(c *Config) { c.Socket = "/run/%u/sock" },
		"space":            func(c *Config) { c.StateDir = "/var/lib/a b" },
		"port":             func(c *Config) { c.Port = 70000 },
		"listen":           func(c *Config) { c.Listen = "127.0.0.1 0.0.0.0" },
		"encrypt":          func(c *Config) { c.Encrypt = "maybe" },
		"extra line break": func(c *Config) { c.Extra = []string{"a = b\n[x]"} },
		"no socket":        func(c *Config) { c.Socket = "" },
	} {
		c := good
		mutate(&c)
		if _, err := c.Render(); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
	if _, err := good.Render(); err != nil {
		t.Fatal(err)
	}
}

func TestNewPassword(t *testing.T) {
	shape := regexp.MustCompile(`^[a-hjkmnp-z2-9]{4}(-[a-hjkmnp-z2-9]{4}){5}$`)
	seen := map[string]bool{}
	counts := map[byte]int{}
	for i := 0; i < 2000; i++ {
		pw, err := NewPassword()
		if err != nil {
			t.Fatal(err)
		}
		if !shape.Match(pw) {
			t.Fatalf("password %q has the wrong shape", pw)
		}
		if seen[string(pw)] {
			t.Fatalf("password %q twice", pw)
		}
		seen[string(pw)] = true
		for _, c := range pw {
			if c != '-' {
				counts[c]++
			}
		}
	}
	// 48,000 letters over 31: every letter turns up, none grossly more than its share.
	if len(counts) != len(passwordAlphabet) {
		t.Fatalf("%d letters used, want %d", len(counts), len(passwordAlphabet))
	}
	for c, n := range counts {
		if n < 1200 || n > 1900 {
			t.Errorf("letter %q drawn %d times of 48000 (expected about 1548)", c, n)
		}
	}
}

func TestValidUnixName(t *testing.T) {
	for name, ok := range map[string]bool{"ccaeabc": true, "t1a2b3alice": true, "_svc": true, "Alice": false, "a;b": false, "": false, "-x": false, "a b": false} {
		if ValidUnixName(name) != ok {
			t.Errorf("ValidUnixName(%q) = %v", name, !ok)
		}
	}
}
