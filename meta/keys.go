package meta

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Key layout in kv. Every key of this package starts with "fs/"; no other package writes
// under it. <ino>, <seq> and <shard> are big-endian (so that byte order is numeric order),
// <id> is the 16 raw bytes of a blob.ID, and names are raw bytes at the end of their key,
// where no separator is needed because everything before them has a fixed length.
//
//	fs/c/ino                 next unreserved inode number (encodeIno)
//	fs/r/<share>             root directory of a share (encodeIno)
//	fs/i/<ino>               inode record (encodeInode)
//	fs/d/<dir><name>         directory entry by name: inode, kind, seq (encodeDirent)
//	fs/o/<dir><seq>          the same entry by creation order: inode, kind, name (encodeOrder)
//	fs/x/<ino><name>         extended attribute value (encodeXattr)
//	fs/z/<ino>               orphan: an inode with no name left, until Reap (empty value)
//	fs/g/<batch>             garbage: objects no inode references (encodeGarbage); <batch>
//	                         is 16 random bytes, one record per transaction that freed any
//	fs/u/<shard>             usage counter shard: inodes and bytes (encodeUsage)
//	fs/p/<ino><index>        the patches of one segment of a file (encodePatches); only for
//	                         segments marked Patched in the inode record
//	fs/k/<pin>, fs/b/<id><pin>  pins that keep objects from the collector (pin.go)
//
// Lookups go through fs/d; ReadDir scans fs/o, whose per-directory sequence numbers (taken
// from the directory's inode record at each insertion, never reused) are its cookies: an
// entry keeps its place while others come and go, which a scan by name could not promise
// across transactions. Both keys of an entry are always written and deleted together.
const (
	keyPrefix     = "fs/"
	nextInoName   = keyPrefix + "c/ino"
	rootPrefix    = keyPrefix + "r/"
	inodePrefix   = keyPrefix + "i/"
	direntPrefix  = keyPrefix + "d/"
	orderPrefix   = keyPrefix + "o/"
	xattrPrefix   = keyPrefix + "x/"
	orphanPrefix  = keyPrefix + "z/"
	garbagePrefix = keyPrefix + "g/"
	usagePrefix   = keyPrefix + "u/"
	patchPrefix   = keyPrefix + "p/"
)

// prefixLen is the length shared by all the prefixes above.
const prefixLen = len(inodePrefix)

func nextInoKey() []byte { return []byte(nextInoName) }

func rootKey(share string) []byte { return append([]byte(rootPrefix), share...) }

// inoKey is prefix|ino, with room for a suffix of extra bytes.
func inoKey(prefix string, ino Ino, extra int) []byte {
	b := make([]byte, 0, prefixLen+8+extra)
	b = append(b, prefix...)
	return binary.BigEndian.AppendUint64(b, uint64(ino))
}

func inodeKey(ino Ino) []byte  { return inoKey(inodePrefix, ino, 0) }
func orphanKey(ino Ino) []byte { return inoKey(orphanPrefix, ino, 0) }

func direntKey(dir Ino, name string) []byte {
	return append(inoKey(direntPrefix, dir, len(name)), name...)
}

// direntDirPrefix starts every fs/d key of dir.
func direntDirPrefix(dir Ino) []byte { return inoKey(direntPrefix, dir, 0) }

func orderKey(dir Ino, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(inoKey(orderPrefix, dir, 8), seq)
}

func orderDirPrefix(dir Ino) []byte { return inoKey(orderPrefix, dir, 0) }

func xattrKey(ino Ino, name string) []byte {
	return append(inoKey(xattrPrefix, ino, len(name)), name...)
}

func xattrInoPrefix(ino Ino) []byte { return inoKey(xattrPrefix, ino, 0) }

// garbageKey names a new garbage record. Random, so that records written by concurrent
// transactions never collide (nor conflict).
func garbageKey() ([]byte, error) {
	k := make([]byte, prefixLen+16)
	copy(k, garbagePrefix)
	if _, err := rand.Read(k[prefixLen:]); err != nil {
		return nil, fmt.Errorf("garbage record name: %w", err)
	}
	return k, nil
}

func patchKey(ino Ino, index uint64) []byte {
	return binary.BigEndian.AppendUint64(inoKey(patchPrefix, ino, 8), index)
}

func patchInoPrefix(ino Ino) []byte { return inoKey(patchPrefix, ino, 0) }

// parsePatchKey returns the segment index of an fs/p key.
func parsePatchKey(key []byte) (uint64, error) {
	if len(key) != prefixLen+16 {
		return 0, fmt.Errorf("patch key of %d bytes: %w", len(key), errCorrupt)
	}
	return binary.BigEndian.Uint64(key[prefixLen+8:]), nil
}

func usageKey(shard int) []byte { return append([]byte(usagePrefix), byte(shard)) }

// The parsers below read keys that a Scan of the matching prefix returned. They check the
// length anyway: a damaged store must give an error, not a panic.

// parseInoKey returns the inode of an fs/i or fs/z key.
func parseInoKey(key []byte) (Ino, error) {
	if len(key) != prefixLen+8 {
		return 0, fmt.Errorf("key of %d bytes under %q: %w", len(key), key[:min(len(key), prefixLen)], errCorrupt)
	}
	return Ino(binary.BigEndian.Uint64(key[prefixLen:])), nil
}

// parseOrderKey returns the sequence number of an fs/o key.
func parseOrderKey(key []byte) (uint64, error) {
	if len(key) != prefixLen+16 {
		return 0, fmt.Errorf("order key of %d bytes: %w", len(key), errCorrupt)
	}
	return binary.BigEndian.Uint64(key[prefixLen+8:]), nil
}

// parseSuffix returns what follows prefix|ino in an fs/x or fs/d key.
func parseSuffix(key []byte) (string, error) {
	if len(key) <= prefixLen+8 {
		return "", fmt.Errorf("key of %d bytes has no name: %w", len(key), errCorrupt)
	}
	return string(key[prefixLen+8:]), nil
}
