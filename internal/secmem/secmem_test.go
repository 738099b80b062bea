package secmem

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

type secret [32]byte

type buffer struct {
	data [65536]byte
	n    int
}

// vmFlags returns the VmFlags of the mapping that holds addr.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 && strings.Contains(line, " ") && !strings.HasSuffix(strings.Fields(line)[0], ":") {
			in = addr >= lo && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return line
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return ""
}

func TestPoolMemoryIsHiddenAndReused(t *testing.T) {
	var keys Pool[secret]
	var bufs Pool[buffer]
	k := keys.Get()
	b := bufs.Get()
	if *k != (secret{}) || b.n != 0 || b.data[100] != 0 {
		t.Fatal("Get returned memory that is not zero")
	}
	k[0], b.data[100], b.n = 7, 9, 101
	flags := vmFlags(t, uintptr(unsafe.Pointer(k)))
	if !strings.Contains(flags, " dd") {
		t.Errorf("key memory is not excluded from core dumps: %s", flags)
	}
	if Locked() && !strings.Contains(flags, " lo") {
		t.Errorf("key memory is not locked: %s", flags)
	}
	*k = secret{}
	keys.Put(k)
	if again := keys.Get(); again != k || *again != (secret{}) {
		t.Error("Put memory was not reused as it was left")
	}
	locked, refusedArenas, heap := Stats()
	t.Logf("locked %d bytes, %d arenas refused, %d heap fallbacks", locked, refusedArenas, heap)
}
