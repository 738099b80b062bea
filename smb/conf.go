// Package smb is what Samba in front of dsh needs: the smb.conf that serves the two mounted
// trees as the desktops' Q: and S: drives (Render), the SMB passwords dsh generates and
// hands to Samba's own password tool (NewPassword, SetPassword), and the checks of the
// values Samba substitutes into the tree-connect check.
//
// It never opens Samba's databases itself and never keeps an SMB password: Samba's tools
// own their files, and a password exists only in the one answer that shows it to its user.
package smb

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Share names the desktops map as drives.
const (
	ShareGroup    = "S"
	ShareArrivals = "Q"
)

// Config is what an operator tells `dsh smb config`.
type Config struct {
	// GroupDir and ArrivalsDir are where the daemon mounts S: and Q: (either may be empty).
	GroupDir, ArrivalsDir string
	// Dsh is the dsh binary Samba runs on every tree connect, Socket the daemon's socket.
	Dsh, Socket string
	// Port is the TCP port smbd listens on; 0 means 445.
	Port int
	// Listen, when set, is the one address smbd binds (interfaces + bind interfaces only).
	Listen string
	// StateDir, when set, holds all of this Samba's state, locks, passdb, caches and logs,
	// so that it never shares a file with another Samba on the host (tests, the demo).
	StateDir string
	// Encrypt is Samba's "server smb encrypt": "required" (the default) or "desired", "off".
	Encrypt string
	// Extra lines are appended to [global] as they are (tests, benchmarks).
	Extra []string
}

// Validate checks the config is complete and that no value could break a line of smb.conf.
func (c Config) Validate() error {
	if c.GroupDir == "" && c.ArrivalsDir == "" {
		return fmt.Errorf("smb: give the Group (S:) mount, the Arrivals (Q:) mount or both")
	}
	for name, v := range map[string]string{"group": c.GroupDir, "arrivals": c.ArrivalsDir, "dsh": c.Dsh, "socket": c.Socket, "state": c.StateDir} {
		if v != "" && !filepath.IsAbs(v) {
			return fmt.Errorf("smb: --%s must be an absolute path, not %q", name, v)
		}
		if !confSafe(v) {
			return fmt.Errorf("smb: --%s %q holds a character smb.conf or a shell cannot take", name, v)
		}
	}
	if c.Dsh == "" || c.Socket == "" {
		return fmt.Errorf("smb: the dsh binary and the control socket must be named")
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("smb: port %d out of range", c.Port)
	}
	if !confSafe(c.Listen) || strings.ContainsAny(c.Listen, " /") {
		return fmt.Errorf("smb: --listen %q is not an address", c.Listen)
	}
	switch c.Encrypt {
	case "", "required", "desired", "off":
	default:
		return fmt.Errorf("smb: encryption %q is none of required, desired, off", c.Encrypt)
	}
	for _, l := range c.Extra {
		if strings.ContainsAny(l, "\n\r") {
			return fmt.Errorf("smb: an extra line holds a line break")
		}
	}
	return nil
}

// confSafe reports whether v can stand in smb.conf and in the shell command line of the
// root preexec without quoting: no line breaks, quotes, %, $, backslashes or ;.
func confSafe(v string) bool {
	return !strings.ContainsAny(v, "\n\r\"'`$%\\;&|<>()*?[]{}!#~ \t")
}

// Render writes the smb.conf. Every setting that differs from Samba's default, or that a
// FUSE backend depends on, says why beside it.
func (c Config) Render() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	port := c.Port
	if port == 0 {
		port = 445
	}
	encrypt := c.Encrypt
	if encrypt == "" {
		encrypt = "required"
	}
	w("# smb.conf for Samba in front of dsh, written by `dsh smb config`.")
	w("# Samba serves the dsh mounts; dsh decides every access from the connected user's uid,")
	w("# which smbd switches to before it touches a file.")
	w("[global]")
	w("  server role = standalone server")
	w("  security = user")
	w("  map to guest = never")
	w("  restrict anonymous = 2")
	w("  # SMB 3.0 and later only (Windows 8 on), encrypted on the wire: identifiable data")
	w("  # crosses the network.")
	w("  server min protocol = SMB3_00")
	w("  server smb encrypt = %s", encrypt)
	w("  smb ports = %d", port)
	if c.Listen != "" {
		w("  interfaces = %s", c.Listen)
		w("  bind interfaces only = yes")
	}
	w("  disable netbios = yes")
	w("  load printers = no")
	w("  printing = bsd")
	w("  printcap name = /dev/null")
	w("  disable spoolss = yes")
	if c.StateDir != "" {
		s := c.StateDir
		w("  # All of this Samba's files live under one folder of its own.")
		w("  state directory = %s", filepath.Join(s, "state"))
		w("  lock directory = %s", filepath.Join(s, "lock"))
		w("  private dir = %s", filepath.Join(s, "private"))
		w("  cache directory = %s", filepath.Join(s, "cache"))
		w("  pid directory = %s", filepath.Join(s, "run"))
		w("  ncalrpc dir = %s", filepath.Join(s, "run", "ncalrpc"))
		w("  log file = %s", filepath.Join(s, "log", "log.%m"))
		w("  passdb backend = tdbsam:%s", filepath.Join(s, "private", "passdb.tdb"))
	} else {
		w("  passdb backend = tdbsam")
	}
	w("  # dsh writes an audit record of every open, create, delete and refusal, naming the")
	w("  # user; Samba's full_audit module stays off (it would log names in plaintext).")
	w("  #")
	w("  # What Windows expects of a drive, over a FUSE backend:")
	w("  # DOS attributes and alternate data streams live in user.* extended attributes, which")
	w("  # dsh stores encrypted (a stream holds at most 65,535 bytes: one attribute value).")
	w("  vfs objects = streams_xattr")
	w("  store dos attributes = yes")
	w("  map archive = no")
	w("  map hidden = no")
	w("  map system = no")
	w("  map readonly = no")
	w("  ea support = yes")
	w("  # FUSE offers no kernel leases or share-mode flocks: Samba keeps share modes and")
	w("  # byte-range locks in its own tables, keyed by device and inode number (dsh's inode")
	w("  # numbers are its metadata's, stable while the tree is mounted).")
	w("  kernel oplocks = no")
	w("  kernel share modes = no")
	w("  posix locking = yes")
	w("  # No client-side caching: a removal, logout or seal reaches an open file at its next")
	w("  # read or write, as on the storage host, where dsh uses direct I/O for the same reason.")
	w("  oplocks = no")
	w("  level2 oplocks = no")
	w("  smb2 leases = no")
	w("  # Change notification (Explorer's refresh) comes from Samba itself, for every change")
	w("  # made through Samba. The kernel's inotify would also report changes made on the")
	w("  # storage host, but Samba asks it as root, and root sees nothing inside dsh's trees.")
	w("  kernel change notify = no")
	w("  # A Windows flush is an fsync, which makes the data durable in dsh.")
	w("  strict sync = yes")
	w("  # Samba's I/O threads read and write for other users' handles; dsh decides each read")
	w("  # and write for the uid that opened the handle, so the thread pool stays on.")
	w("  aio read size = 1")
	w("  aio write size = 1")
	w("  # Symbolic links never lead out of a share.")
	w("  wide links = no")
	w("  unix extensions = no")
	for _, l := range c.Extra {
		w("  %s", l)
	}
	check := fmt.Sprintf("%s --socket %s smb check --user %%u --share %%S --client %%I", c.Dsh, c.Socket)
	share := func(name, comment, path string, extra ...string) {
		w("")
		w("[%s]", name)
		w("  comment = %s", comment)
		w("  path = %s", path)
		w("  read only = no")
		w("  browseable = yes")
		w("  create mask = 0660")
		w("  directory mask = 0770")
		for _, l := range extra {
			w("  %s", l)
		}
		w("  # A tree connect is refused unless the user holds a live dsh session (two factors:")
		w("  # dsh login or the portal); an SMB password alone opens nothing.")
		w("  root preexec = %s", check)
		w("  root preexec close = yes")
	}
	if c.GroupDir != "" {
		share(ShareGroup, "Group (S:) - project shares", c.GroupDir)
	}
	if c.ArrivalsDir != "" {
		share(ShareArrivals, "MFT Arrivals (Q:)", c.ArrivalsDir,
			"# Read and delete only: dsh refuses every create, write and rename here.")
	}
	return b.String(), nil
}

// MakeStateDirs creates the folders of a Config's StateDir that Samba does not create
// itself; the private folder, which holds the passdb, is for root alone.
func MakeStateDirs(dir string) error {
	for _, d := range []string{"state", "lock", "cache", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("smb: state folder: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "private"), 0o700); err != nil {
		return fmt.Errorf("smb: state folder: %w", err)
	}
	return nil
}
