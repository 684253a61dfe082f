package pagecache

import (
	"testing"
)

// TestMappingAgainstMap drives one partition with random inserts and deletes
// and compares every lookup with a plain map.
func TestMappingAgainstMap(t *testing.T) {
	seed := testSeed(t)
	r := newRand(seed)
	var p partition
	p.tab.Store(newMapTable(4))
	model := map[uint64]int32{}
	var keys []uint64
	for op := range 200000 {
		if len(keys) > 0 && (r.IntN(2) == 0 || len(keys) > 300) {
			i := r.IntN(len(keys))
			k := keys[i]
			keys[i] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			p.deleteLocked(k)
			delete(model, k)
		} else {
			// Small key space so probe runs collide and wrap.
			k := uint64(r.IntN(4))<<32 | uint64(r.IntN(2000))
			if _, ok := model[k]; ok {
				continue
			}
			p.insertLocked(k, int32(op))
			model[k] = int32(op)
			keys = append(keys, k)
		}
		if p.live != len(model) {
			t.Fatalf("op %d: live %d, model %d", op, p.live, len(model))
		}
		if op%97 == 0 {
			for k, id := range model {
				if got := p.lookup(k); got != id {
					t.Fatalf("op %d: lookup(%x) = %d, want %d", op, k, got, id)
				}
			}
			if got := p.lookup(5<<32 | 1); got != -1 {
				t.Fatalf("lookup of absent key = %d", got)
			}
		}
	}
	if n := len(p.tab.Load().slots); n > 4096 {
		t.Fatalf("table grew to %d slots for at most 301 entries", n)
	}
}
