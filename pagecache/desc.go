package pagecache

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
)

// Tag names the page a buffer holds.
type Tag struct {
	Rel base.RelFileNode
	Blk base.BlockNum
}

func (t Tag) key() uint64 { return uint64(t.Rel)<<32 | uint64(t.Blk) }

// The state word of a buffer descriptor packs, as PostgreSQL's does, the
// pin count, the usage count and the flags into one atomic word, so that the
// hot path (pin, unpin, bump usage) is a single compare-and-swap.
//
//	bits  0..23  pin count (refcount)
//	bits 24..27  usage count, 0..maxUsageCount
//	bits 32..39  flags
const (
	refOne     uint64 = 1
	refMask    uint64 = 1<<24 - 1
	usageShift        = 24
	usageOne   uint64 = 1 << usageShift
	usageMask  uint64 = 0xF << usageShift

	// maxUsageCount caps the usage count (BM_MAX_USAGE_COUNT).
	maxUsageCount = 5

	flagLocked           uint64 = 1 << 32 // header spinlock (BM_LOCKED)
	flagDirty            uint64 = 1 << 33 // contents differ from disk
	flagValid            uint64 = 1 << 34 // contents are the page's
	flagTagValid         uint64 = 1 << 35 // tag is in the mapping table
	flagIOInProgress     uint64 = 1 << 36 // a read or write is under way
	flagIOError          uint64 = 1 << 37 // the last I/O failed
	flagJustDirtied      uint64 = 1 << 38 // dirtied while being written
	flagCheckpointNeeded uint64 = 1 << 39 // must be written by the running checkpoint
)

func refcount(st uint64) uint64 { return st & refMask }
func usage(st uint64) uint64    { return (st & usageMask) >> usageShift }

// bufferDesc describes one buffer of the slab.
type bufferDesc struct {
	// state is the packed state word above. Changes other than pin, unpin
	// and usage-count changes are made with the header lock (flagLocked)
	// held, through lockHdr / unlockHdr.
	state atomic.Uint64
	// tag is written only with the header lock held and the pin count at
	// one (the writer's own pin); it is stable for anyone holding a pin.
	tag Tag
	// content is the content latch: share to read the page, exclusive to
	// change it.
	content sync.RWMutex
	// io is held by the goroutine that does a read or write of the page for
	// as long as flagIOInProgress is set, so others wait for the I/O by
	// locking it.
	io sync.Mutex
	// hits counts requests served from this buffer; it lives here, on a
	// line the hit path writes anyway, rather than in one shared counter.
	hits atomic.Uint64
	_    [64 - 8 - 8 - 24 - 8 - 8]byte // one descriptor per cache line
}

// lockHdr takes the header spinlock and returns the state with the lock bit
// set. Holders never block, do no I/O and take no other lock.
func (d *bufferDesc) lockHdr() uint64 {
	for spins := 0; ; spins++ {
		old := d.state.Load()
		if old&flagLocked == 0 && d.state.CompareAndSwap(old, old|flagLocked) {
			return old | flagLocked
		}
		if spins > 100 {
			runtime.Gosched()
		}
	}
}

// unlockHdr stores st (minus the lock bit), releasing the header lock.
func (d *bufferDesc) unlockHdr(st uint64) { d.state.Store(st &^ flagLocked) }

// waitHdrUnlocked spins until the header lock is free and returns the state.
func (d *bufferDesc) waitHdrUnlocked() uint64 {
	for spins := 0; ; spins++ {
		st := d.state.Load()
		if st&flagLocked == 0 {
			return st
		}
		if spins > 100 {
			runtime.Gosched()
		}
	}
}

// pin adds a pin and bumps the usage count: by one up to the maximum for a
// normal access, only from zero to one for an access through a ring (so a
// bulk pass cannot make its pages look hot). It reports whether the buffer
// is valid.
func (d *bufferDesc) pin(strategy bool) (valid bool) {
	for {
		old := d.waitHdrUnlocked()
		st := old + refOne
		if u := usage(st); strategy {
			if u == 0 {
				st += usageOne
			}
		} else if u < maxUsageCount {
			st += usageOne
		}
		if d.state.CompareAndSwap(old, st) {
			return st&flagValid != 0
		}
	}
}

// unpin drops a pin.
func (d *bufferDesc) unpin() {
	for {
		old := d.waitHdrUnlocked()
		if invariants && refcount(old) == 0 {
			panic("pagecache: unpin of a buffer that is not pinned")
		}
		if d.state.CompareAndSwap(old, old-refOne) {
			return
		}
	}
}
