package pagecache

import (
	"sync"
	"sync/atomic"
)

// The mapping table from tag to buffer id, split into numPartitions
// partitions by a hash of the tag (PostgreSQL's buffer mapping table with its
// NUM_BUFFER_PARTITIONS locks).
//
// Unlike PostgreSQL's, lookups take no lock at all. Each partition is an
// open-addressing table of (key, id) slots read with atomic loads; writers
// change it under the partition mutex. A lock-free reader may see a stale id
// or miss an entry that is being moved, so what it finds is only a hint: the
// reader pins the buffer and then checks that the buffer's tag is the one it
// looked for (the tag cannot change while it holds a pin), and on any doubt
// it takes the partition mutex and looks again. Lookups therefore write to no
// shared cache line but the buffer's own descriptor, which is what lets hits
// scale across cores.
//
// Slot keys: 0 is empty, anything else is tag.key()+1 (a relation number of
// ^0 is reserved, so the sum never wraps to 0). Deletion shifts the rest of
// the probe run back (no tombstones), so the table never needs rebuilding
// for churn, only for growth, and a miss allocates nothing. A reader that
// races with such a shift may miss an entry; it then falls back to the
// locked lookup.

const (
	slotEmpty     uint64 = 0
	minTableSlots        = 16
)

type mapSlot struct {
	key atomic.Uint64
	id  atomic.Int32
}

type mapTable struct {
	slots []mapSlot
	mask  uint64
}

type partition struct {
	mu sync.Mutex // serialises writers; readers take no lock
	// tab is replaced by a larger table when live passes half its slots.
	tab atomic.Pointer[mapTable]
	// live counts the slots in use; guarded by mu.
	live int
	_    [64 - 8 - 8 - 8]byte
}

// newMapTable returns a table for n entries at most a quarter full.
func newMapTable(n int) *mapTable {
	size := minTableSlots
	for size < 4*n {
		size *= 2
	}
	return &mapTable{slots: make([]mapSlot, size), mask: uint64(size - 1)}
}

func slotHash(key uint64) uint64 {
	key ^= key >> 33
	key *= 0xff51afd7ed558ccd
	key ^= key >> 33
	return key
}

// lookup returns the id stored for key, or -1. It takes no lock; see above
// for why its answer is only a hint unless p.mu is held.
func (p *partition) lookup(key uint64) int32 {
	tab := p.tab.Load()
	want := key + 1
	for i, h := uint64(0), slotHash(key); i <= tab.mask; i++ {
		s := &tab.slots[(h+i)&tab.mask]
		switch k := s.key.Load(); k {
		case slotEmpty:
			return -1
		case want:
			return s.id.Load()
		}
	}
	return -1
}

// insertLocked adds key -> id; key must not be present. p.mu must be held.
func (p *partition) insertLocked(key uint64, id int32) {
	if 2*(p.live+1) > len(p.tab.Load().slots) {
		p.growLocked()
	}
	p.tab.Load().put(key+1, id)
	p.live++
}

// put stores a slot key and id in the first empty slot of its probe run. The
// id goes in before the key, so a reader that sees the key sees this id.
func (tab *mapTable) put(k uint64, id int32) {
	for i, h := uint64(0), slotHash(k-1); ; i++ {
		s := &tab.slots[(h+i)&tab.mask]
		if s.key.Load() == slotEmpty {
			s.id.Store(id)
			s.key.Store(k)
			return
		}
	}
}

// deleteLocked removes key, which must be present, and closes the gap by
// moving later entries of the probe run back. p.mu must be held.
func (p *partition) deleteLocked(key uint64) {
	tab := p.tab.Load()
	want := key + 1
	h := slotHash(key)
	var i uint64
	for n := uint64(0); ; n++ {
		if n > tab.mask {
			panic("pagecache: mapping entry to delete is missing")
		}
		i = (h + n) & tab.mask
		if tab.slots[i].key.Load() == want {
			break
		}
	}
	// Slot i is the hole. Find the next entry that may move into it: one
	// whose home slot does not lie cyclically in (i, j].
	for j := (i + 1) & tab.mask; ; j = (j + 1) & tab.mask {
		k := tab.slots[j].key.Load()
		if k == slotEmpty {
			break
		}
		home := slotHash(k-1) & tab.mask
		if (j-home)&tab.mask < (j-i)&tab.mask {
			continue // home lies in (i, j]: it must stay after the hole
		}
		tab.slots[i].id.Store(tab.slots[j].id.Load())
		tab.slots[i].key.Store(k)
		i = j
	}
	tab.slots[i].key.Store(slotEmpty)
	p.live--
}

// growLocked publishes a table twice the size. Readers still walking the old
// table see a consistent, if stale, picture. p.mu must be held.
func (p *partition) growLocked() {
	old := p.tab.Load()
	tab := &mapTable{slots: make([]mapSlot, 2*len(old.slots)), mask: 2*old.mask + 1}
	for i := range old.slots {
		if k := old.slots[i].key.Load(); k != slotEmpty {
			tab.put(k, old.slots[i].id.Load())
		}
	}
	p.tab.Store(tab)
}
