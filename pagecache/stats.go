package pagecache

import "sync/atomic"

type counters struct {
	reads            atomic.Uint64
	allocs           atomic.Uint64
	evictions        atomic.Uint64
	ringReuses       atomic.Uint64
	extends          atomic.Uint64
	dirtied          atomic.Uint64
	writesBackend    atomic.Uint64
	writesBgWriter   atomic.Uint64
	writesCheckpoint atomic.Uint64
	maxWrittenClean  atomic.Uint64
	checksumFailures atomic.Uint64
	checkpoints      atomic.Uint64
}

// hitCount sums the hit counters kept in the descriptors.
func (bp *Pool) hitCount() uint64 {
	var n uint64
	for i := range bp.descs {
		n += bp.descs[i].hits.Load()
	}
	return n
}

// Stats are the pool's counters since it was created, named after
// pg_stat_database, pg_stat_bgwriter and pg_stat_checkpointer.
type Stats struct {
	NBuffers         int    // buffers in the pool
	Hits             uint64 // blks_hit: requests served from the pool
	Reads            uint64 // blks_read: pages read from disk
	Allocs           uint64 // buffers_alloc: buffers (re)assigned to a page
	Evictions        uint64 // valid pages pushed out to make room
	RingReuses       uint64 // buffers recycled within a strategy ring
	Extends          uint64 // blocks added to relations
	Dirtied          uint64 // clean buffers made dirty
	WritesBackend    uint64 // buffers_backend: written by a reader to free a buffer
	WritesBgWriter   uint64 // buffers_clean: written by the background writer
	WritesCheckpoint uint64 // buffers_checkpoint: written by checkpoints
	MaxWrittenClean  uint64 // bgwriter rounds stopped by bgwriter_lru_maxpages
	ChecksumFailures uint64 // checksum_failures: pages that failed verification
	Checkpoints      uint64 // checkpoints completed
}

// Stats returns a snapshot of the counters.
func (bp *Pool) Stats() Stats {
	c := &bp.stats
	return Stats{
		NBuffers:         bp.nbuf,
		Hits:             bp.hitCount(),
		Reads:            c.reads.Load(),
		Allocs:           c.allocs.Load(),
		Evictions:        c.evictions.Load(),
		RingReuses:       c.ringReuses.Load(),
		Extends:          c.extends.Load(),
		Dirtied:          c.dirtied.Load(),
		WritesBackend:    c.writesBackend.Load(),
		WritesBgWriter:   c.writesBgWriter.Load(),
		WritesCheckpoint: c.writesCheckpoint.Load(),
		MaxWrittenClean:  c.maxWrittenClean.Load(),
		ChecksumFailures: c.checksumFailures.Load(),
		Checkpoints:      c.checkpoints.Load(),
	}
}

// BufferInfo describes one buffer, like a row of pg_buffercache.
type BufferInfo struct {
	ID         int
	Tag        Tag  // meaningful only when Valid
	Valid      bool // holds a page
	Dirty      bool
	UsageCount int
	Pins       int
}

// Snapshot describes every buffer. Each row is consistent in itself; the
// rows are not taken at one instant.
func (bp *Pool) Snapshot() []BufferInfo {
	out := make([]BufferInfo, bp.nbuf)
	for id := range bp.descs {
		d := &bp.descs[id]
		st := d.lockHdr()
		tag := d.tag
		d.unlockHdr(st)
		out[id] = BufferInfo{
			ID:         id,
			Tag:        tag,
			Valid:      st&flagValid != 0,
			Dirty:      st&flagDirty != 0,
			UsageCount: int(usage(st)),
			Pins:       int(refcount(st)),
		}
	}
	return out
}
