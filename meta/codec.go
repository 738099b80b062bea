package meta

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"dsh/blob"
	"dsh/kv"
	"dsh/vault"
)

// Value encodings. Every value starts with a version byte so that a later dsh can change a
// record and still read the old one; this one writes and reads version 1 only. Integers of
// fixed width are big-endian, lengths and segment indexes are minimal uvarints, and a
// decoder accepts exactly what its encoder writes (nothing left over, no overlong varint),
// so that decode-then-encode gives back the same bytes and the fuzz targets can check it.
//
// Binary rather than JSON: GetAttr and Lookup decode an inode on every FUSE call.
const valueVersion = 1

// errCorrupt is wrapped by every error about a damaged stored record.
var errCorrupt = fmt.Errorf("damaged metadata record: %w", ErrInvalid)

// inode is the stored record of an inode, plus the bookkeeping of the transaction that
// holds it.
type inode struct {
	ino                 Ino // from the key, not stored in the value
	kind                Kind
	mode                uint32
	nlink               uint32
	atime, mtime, ctime int64
	xattrs              uint32 // number of extended attributes
	share               string

	// Directories only.
	parent  Ino    // 0 for a share root
	nextSeq uint64 // sequence number of the next entry added

	// Symlinks only.
	target string

	// Regular files only.
	size    int64
	content Content

	dirty, deleted bool // set by op, never stored
}

// Encoded inode record, version 2 (version 1 is read too):
//
//	version u8 | kind u8 | mode u32 | nlink u32 | atime i64 | mtime i64 | ctime i64 |
//	xattrs u32 | share (uvarint length, bytes) | then by kind:
//	  directory: parent u64 | nextSeq u64
//	  symlink:   target (uvarint length, bytes)
//	  file:      size i64 | file ID [16] | wrapped key [73] | seals uvarint (version 2
//	             only) | segment count uvarint | per segment: index uvarint |
//	             object [16] | flags u8 (version 2 only; bit 0: Patched, the others 0)
//
// Version 2 adds the seal count and the flags byte; records of every other kind stay
// version 1.
const (
	inodeFixedLen = 1 + 1 + 4 + 4 + 3*8 + 4
	segmentMaxLen = binary.MaxVarintLen64 + blob.IDLen + 1
	// maxFileRecord is the longest record of a file, with a share name as long as a name.
	maxFileRecord = inodeFixedLen + binary.MaxVarintLen64 + MaxNameLen + 8 + 16 +
		vault.WrappedKeySize + 2*binary.MaxVarintLen64 + MaxSegments*segmentMaxLen
)

// The largest change of one file, a SetContent that replaces all of MaxSegments segments
// with as many new ones, writes the new record and a garbage record listing the old objects
// (plus small keys). This fails to compile if MaxSegments grows beyond what fits.
const _ = uint(kv.MaxTxnBytes - maxFileRecord - (1 + MaxSegments*blob.IDLen) - 4096)

func encodeInode(n *inode) ([]byte, error) {
	size := inodeFixedLen + binary.MaxVarintLen64 + len(n.share)
	switch n.kind {
	case KindDir:
		size += 16
	case KindSymlink:
		size += binary.MaxVarintLen64 + len(n.target)
	case KindFile:
		size += 8 + 16 + vault.WrappedKeySize + 2*binary.MaxVarintLen64 + len(n.content.Segments)*segmentMaxLen
	}
	if len(n.content.Segments) > MaxSegments {
		return nil, fmt.Errorf("inode %d: %d segments, limit %d: %w", n.ino, len(n.content.Segments), MaxSegments, ErrTooBig)
	}
	b := make([]byte, 0, size)
	b = append(b, inodeVersion, byte(n.kind))
	b = binary.BigEndian.AppendUint32(b, n.mode)
	b = binary.BigEndian.AppendUint32(b, n.nlink)
	b = binary.BigEndian.AppendUint64(b, uint64(n.atime))
	b = binary.BigEndian.AppendUint64(b, uint64(n.mtime))
	b = binary.BigEndian.AppendUint64(b, uint64(n.ctime))
	b = binary.BigEndian.AppendUint32(b, n.xattrs)
	b = appendString(b, n.share)
	switch n.kind {
	case KindDir:
		b = binary.BigEndian.AppendUint64(b, uint64(n.parent))
		b = binary.BigEndian.AppendUint64(b, n.nextSeq)
	case KindSymlink:
		b = appendString(b, n.target)
	case KindFile:
		b = binary.BigEndian.AppendUint64(b, uint64(n.size))
		b = append(b, n.content.FileID[:]...)
		k, err := n.content.Key.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode inode %d: wrapped key: %w", n.ino, err)
		}
		b = append(b, k...)
		b = binary.AppendUvarint(b, n.content.Seals)
		b = binary.AppendUvarint(b, uint64(len(n.content.Segments)))
		for _, s := range n.content.Segments {
			b = binary.AppendUvarint(b, s.Index)
			b = append(b, s.Object[:]...)
			var flags byte
			if s.Patched {
				flags |= segPatched
			}
			b = append(b, flags)
		}
	case KindFIFO, KindSocket:
	default:
		return nil, fmt.Errorf("encode inode %d: kind %d: %w", n.ino, n.kind, ErrInvalid)
	}
	return b, nil
}

func decodeInode(ino Ino, b []byte) (*inode, error) {
	d := decoder{b: b, what: "inode"}
	v := d.u8()
	if d.err == nil && v != 1 && v != inodeVersion {
		d.failf("version %d, this dsh reads 1 and %d", v, inodeVersion)
	}
	n := &inode{ino: ino}
	n.kind = Kind(d.u8())
	n.mode = d.u32()
	n.nlink = d.u32()
	n.atime = int64(d.u64())
	n.mtime = int64(d.u64())
	n.ctime = int64(d.u64())
	n.xattrs = d.u32()
	n.share = d.str()
	if d.err == nil && (!n.kind.valid() || n.mode&^0o7777 != 0) {
		d.failf("kind %d, mode %o", n.kind, n.mode)
	}
	switch n.kind {
	case KindDir:
		n.parent = Ino(d.u64())
		n.nextSeq = d.u64()
	case KindSymlink:
		n.target = d.str()
	case KindFile:
		n.size = int64(d.u64())
		copy(n.content.FileID[:], d.take(16))
		if k := d.take(vault.WrappedKeySize); d.err == nil {
			w, err := vault.UnmarshalWrappedKey(k)
			if err != nil {
				d.failf("wrapped key: %v", err)
			}
			n.content.Key = w
		}
		if v >= 2 {
			n.content.Seals = d.uvarint()
		}
		n.content.Segments = d.segments(v >= 2)
		if d.err == nil && n.size < 0 {
			d.failf("negative size %d", n.size)
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return n, nil
}

// inodeVersion is the version of inode records written now (see encodeInode).
const inodeVersion = 2

// segPatched is the flag of a segment with patches.
const segPatched = 1

// segments reads a segment list, refusing one out of order; flags says each segment has
// its flags byte (version 2).
func (d *decoder) segments(flags bool) []Segment {
	count := d.uvarint()
	// Each segment takes at least 17 bytes; a count beyond that is garbage, and must not
	// make us allocate for it.
	if d.err != nil || count > MaxSegments || count > uint64(len(d.b)/(1+blob.IDLen)) {
		d.failf("segment count %d", count)
		return nil
	}
	if count == 0 {
		return nil
	}
	segs := make([]Segment, count)
	for i := range segs {
		segs[i].Index = d.uvarint()
		copy(segs[i].Object[:], d.take(blob.IDLen))
		if flags {
			f := d.u8()
			if f&^segPatched != 0 {
				d.failf("segment %d: flags %#x", i, f)
			}
			segs[i].Patched = f&segPatched != 0
		}
		if d.err == nil && i > 0 && segs[i].Index <= segs[i-1].Index {
			d.failf("segment %d out of order", i)
		}
	}
	return segs
}

// Encoded patch record (one segment's patches), version 2:
//
//	version u8 = 2 | count uvarint | per patch: from uvarint | to uvarint | first uvarint |
//	blocks uvarint | object [16]
//
// in 4 KiB blocks. Version 1, written before patches could be single blocks, has the same
// layout in 64 KiB chunks; it is read and turned into blocks (ChunkPatch).
//
// Patches are sorted by From and do not overlap; each covers a non-empty part of its
// object's blocks.
const patchVersion = 2

func encodePatches(ps []Patch) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(ps)*(4*binary.MaxVarintLen32+blob.IDLen))
	b = append(b, patchVersion)
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = binary.AppendUvarint(b, uint64(p.From))
		b = binary.AppendUvarint(b, uint64(p.To))
		b = binary.AppendUvarint(b, uint64(p.First))
		b = binary.AppendUvarint(b, uint64(p.Blocks))
		b = append(b, p.Object[:]...)
	}
	return b
}

func decodePatches(b []byte) ([]Patch, error) {
	d := decoder{b: b, what: "patches"}
	v := d.u8()
	if d.err == nil && v != 1 && v != patchVersion {
		d.failf("version %d, this dsh reads 1 and %d", v, patchVersion)
	}
	count := d.uvarint()
	if d.err != nil || count == 0 || count > MaxPatches || count > uint64(len(d.b)/(4+blob.IDLen)) {
		d.failf("patch count %d", count)
		return nil, d.finish()
	}
	ps := make([]Patch, count)
	for i := range ps {
		p := &ps[i]
		p.From, p.To, p.First, p.Blocks = d.u32v(), d.u32v(), d.u32v(), d.u32v()
		copy(p.Object[:], d.take(blob.IDLen))
		if d.err == nil && v == 1 {
			if p.From >= MaxPatches/blocksPerChunk || p.To > MaxPatches/blocksPerChunk || p.First >= MaxPatches/blocksPerChunk || p.Blocks > MaxPatches/blocksPerChunk {
				d.failf("version 1 patch %d: chunks out of range", i)
			}
			*p = ChunkPatch(p.From, p.To, p.First, p.Blocks, p.Object)
		}
		if d.err == nil {
			if err := checkPatch(ps[:i+1]); err != nil {
				d.failf("%v", err)
			}
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return ps, nil
}

// blocksPerChunk is how many blocks of a patch make one 64 KiB chunk of the older records.
const blocksPerChunk = vault.ChunkSize / vault.BlockSize

// ChunkPatch returns a patch recorded in 64 KiB chunks (patch records of version 1, and
// what other records kept before blocks) in blocks: chunks [from, to) of an object of
// chunks chunks from chunk first. The object's last chunk may be partial; readers clamp a
// patch to the segment's length, so the rounded-up block counts name no byte it lacks.
func ChunkPatch(from, to, first, chunks uint32, obj blob.ID) Patch {
	return Patch{From: from * blocksPerChunk, To: to * blocksPerChunk, First: first * blocksPerChunk,
		Blocks: chunks * blocksPerChunk, Object: obj}
}

// checkPatch checks the last patch of ps against the rules and the one before it.
func checkPatch(ps []Patch) error {
	p := ps[len(ps)-1]
	if p.From >= p.To || p.From < p.First || p.To-p.First > p.Blocks || p.To > MaxPatches {
		return fmt.Errorf("patch %d: blocks [%d, %d) of an object of %d from %d", len(ps)-1, p.From, p.To, p.Blocks, p.First)
	}
	if len(ps) > 1 && ps[len(ps)-2].To > p.From {
		return fmt.Errorf("patch %d overlaps or precedes the one before", len(ps)-1)
	}
	return nil
}

// u32v reads a uvarint that must fit 32 bits.
func (d *decoder) u32v() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.failf("value %d out of range", v)
		return 0
	}
	return uint32(v)
}

// attr is what callers see of n. It shares the segment list with n: an inode record lives
// only as long as the transaction that decoded it, and nothing modifies a list in place.
func (n *inode) attr() Attr {
	a := Attr{
		Ino:   n.ino,
		Share: n.share,
		Kind:  n.kind,
		Mode:  n.mode,
		Nlink: n.nlink,
		Atime: n.atime,
		Mtime: n.mtime,
		Ctime: n.ctime,
	}
	switch n.kind {
	case KindFile:
		a.Size = n.size
		a.Content = n.content
	case KindSymlink:
		a.Size = int64(len(n.target))
		a.Target = n.target
	}
	return a
}

// dirent is the value of an fs/d key.
type dirent struct {
	ino  Ino
	kind Kind
	seq  uint64
}

// Encoded dirent, version 1: version u8 | ino u64 | kind u8 | seq u64.
const direntLen = 1 + 8 + 1 + 8

func encodeDirent(e dirent) []byte {
	b := make([]byte, 0, direntLen)
	b = append(b, valueVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.ino))
	b = append(b, byte(e.kind))
	return binary.BigEndian.AppendUint64(b, e.seq)
}

func decodeDirent(b []byte) (dirent, error) {
	d := decoder{b: b, what: "directory entry"}
	d.version()
	e := dirent{ino: Ino(d.u64()), kind: Kind(d.u8()), seq: d.u64()}
	if d.err == nil && (e.ino == 0 || !e.kind.valid() || e.seq == 0) {
		d.failf("inode %d, kind %d, seq %d", e.ino, e.kind, e.seq)
	}
	return e, d.finish()
}

// Encoded order entry (the value of an fs/o key), version 1:
// version u8 | ino u64 | kind u8 | name (the rest).
func encodeOrder(ino Ino, kind Kind, name string) []byte {
	b := make([]byte, 0, 1+8+1+len(name))
	b = append(b, valueVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(ino))
	b = append(b, byte(kind))
	return append(b, name...)
}

func decodeOrder(b []byte) (ino Ino, kind Kind, name string, err error) {
	d := decoder{b: b, what: "directory order entry"}
	d.version()
	ino = Ino(d.u64())
	kind = Kind(d.u8())
	name = string(d.rest())
	if d.err == nil && (ino == 0 || !kind.valid() || checkName(name) != nil) {
		d.failf("inode %d, kind %d, name of %d bytes", ino, kind, len(name))
	}
	return ino, kind, name, d.finish()
}

// Encoded inode number (the inode counter and share roots), version 1: version u8 | ino u64.
func encodeIno(ino Ino) []byte {
	return binary.BigEndian.AppendUint64([]byte{valueVersion}, uint64(ino))
}

func decodeIno(b []byte) (Ino, error) {
	d := decoder{b: b, what: "inode number"}
	d.version()
	ino := Ino(d.u64())
	if d.err == nil && ino == 0 {
		d.failf("inode 0")
	}
	return ino, d.finish()
}

// usage is one shard of the usage counters. A shard may go negative (an inode created
// under one shard and reaped under another); only the sum means anything.
type usage struct{ inodes, bytes int64 }

// Encoded usage shard, version 1: version u8 | inodes i64 | bytes i64.
func encodeUsage(u usage) []byte {
	b := make([]byte, 0, 17)
	b = append(b, valueVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(u.inodes))
	return binary.BigEndian.AppendUint64(b, uint64(u.bytes))
}

func decodeUsage(b []byte) (usage, error) {
	d := decoder{b: b, what: "usage counter"}
	d.version()
	u := usage{inodes: int64(d.u64()), bytes: int64(d.u64())}
	return u, d.finish()
}

// Encoded extended attribute, version 1: version u8 | value (the rest).
func encodeXattr(value []byte) []byte {
	return append(append(make([]byte, 0, 1+len(value)), valueVersion), value...)
}

func decodeXattr(b []byte) ([]byte, error) {
	d := decoder{b: b, what: "extended attribute"}
	d.version()
	v := slices.Clone(d.rest())
	if d.err == nil && len(v) > MaxXattrValue {
		d.failf("value of %d bytes", len(v))
	}
	if v == nil && d.err == nil {
		v = []byte{}
	}
	return v, d.finish()
}

// Encoded garbage record, version 1: version u8 | object IDs [16] each, at least one. A
// transaction lists all the objects it frees in one record, so that deleting a big file is
// one write, not one per object.
func encodeGarbage(ids []blob.ID) []byte {
	b := make([]byte, 0, 1+len(ids)*blob.IDLen)
	b = append(b, valueVersion)
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

func decodeGarbage(b []byte) ([]blob.ID, error) {
	d := decoder{b: b, what: "garbage record"}
	d.version()
	if d.err == nil && (len(d.b) == 0 || len(d.b)%blob.IDLen != 0) {
		d.failf("%d bytes of object IDs", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	ids := make([]blob.ID, len(d.b)/blob.IDLen)
	for i := range ids {
		copy(ids[i][:], d.take(blob.IDLen))
	}
	return ids, d.finish()
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads a record front to back. The first problem sticks in err and turns every
// later read into a zero value, so that decoders read straight through and check once.
type decoder struct {
	b    []byte
	what string
	err  error
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %s: %w", d.what, fmt.Sprintf(format, args...), errCorrupt)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.failf("truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) version() {
	if p := d.take(1); p != nil && p[0] != valueVersion {
		d.failf("version %d, this dsh reads %d", p[0], valueVersion)
	}
}

func (d *decoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// uvarint accepts only the minimal encoding, which is what AppendUvarint writes.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		d.failf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.failf("string of %d bytes, %d left", n, len(d.b))
		return ""
	}
	return string(d.take(int(n)))
}

func (d *decoder) rest() []byte { return d.take(len(d.b)) }

// finish reports the first problem, or bytes left over.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.failf("%d bytes left over", len(d.b))
	}
	return d.err
}
