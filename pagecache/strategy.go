package pagecache

// StrategyKind names a buffer access strategy (PostgreSQL's
// BufferAccessStrategyType).
type StrategyKind int

const (
	// BulkRead is for large sequential reads: a 256 KiB ring.
	BulkRead StrategyKind = iota
	// BulkWrite is for bulk loads: a 16 MiB ring.
	BulkWrite
	// Vacuum is for VACUUM: a 2 MiB ring (vacuum_buffer_usage_limit).
	Vacuum
)

func (k StrategyKind) String() string {
	switch k {
	case BulkRead:
		return "bulkread"
	case BulkWrite:
		return "bulkwrite"
	case Vacuum:
		return "vacuum"
	}
	return "unknown"
}

func (k StrategyKind) ringBytes() int {
	switch k {
	case BulkWrite:
		return 16 << 20
	case Vacuum:
		return 2 << 20
	default:
		return 256 << 10
	}
}

// Strategy is a ring of buffers that a bulk operation recycles, so that a
// pass over a relation larger than the pool replaces at most the ring's worth
// of other pages (PostgreSQL's BufferAccessStrategy). Pages it touches get a
// usage count of at most one, so the clock takes them first.
//
// A Strategy belongs to one operation and one goroutine at a time.
type Strategy struct {
	bp   *Pool
	kind StrategyKind
	ring []int32 // buffer ids; -1 for an empty slot
	cur  int     // the slot used last
}

// NewStrategy returns a ring of kind's size, at most an eighth of the pool.
func (bp *Pool) NewStrategy(kind StrategyKind) *Strategy {
	n := min(kind.ringBytes()/BlockSize, bp.nbuf/8)
	n = max(n, 1)
	s := &Strategy{bp: bp, kind: kind, ring: make([]int32, n)}
	for i := range s.ring {
		s.ring[i] = -1
	}
	return s
}

// Kind returns the strategy's kind.
func (s *Strategy) Kind() StrategyKind { return s.kind }

// next advances to the next slot and returns its buffer with the header
// locked if it can be reused: nobody pins it and nobody but us has used it
// since (usage count at most one).
func (s *Strategy) next() (int32, uint64, bool) {
	s.cur = (s.cur + 1) % len(s.ring)
	id := s.ring[s.cur]
	if id < 0 {
		return 0, 0, false
	}
	d := &s.bp.descs[id]
	st := d.lockHdr()
	if refcount(st) == 0 && usage(st) <= 1 {
		return id, st, true
	}
	d.unlockHdr(st)
	return 0, 0, false
}

// add puts a buffer from the clock sweep into the current slot.
func (s *Strategy) add(id int32) { s.ring[s.cur] = id }

// reject forgets the current slot's buffer, which the caller declined.
func (s *Strategy) reject() { s.ring[s.cur] = -1 }
