package pagecache

import (
	"math"
	"sync"
	"time"
)

// bgWriterState is the background writer's memory between rounds.
type bgWriterState struct {
	mu            sync.Mutex // one round at a time; guards the fields below
	started       bool
	prevAllocs    uint64  // buffers_alloc at the previous round
	smoothedAlloc float64 // smoothed allocations per round
	nextToClean   uint64  // clock tick the next round starts at
}

// smoothingSamples weighs the allocation average like PostgreSQL's
// BgBufferSync: new peaks are taken at once, dips decay over 16 rounds.
const smoothingSamples = 16

// scanWholePoolEvery is how long an idle pool takes to be scanned through
// completely, so dirty pages are written even when nothing allocates.
const scanWholePoolEvery = 120 * time.Second

// StartBgWriter starts the background writer goroutine, which runs a round
// every BgWriterDelay until Close, or until the Halt stops: a stopped engine
// writes no page.
func (bp *Pool) StartBgWriter() {
	bp.wg.Add(1)
	go func() {
		defer bp.wg.Done()
		t := time.NewTicker(bp.cfg.BgWriterDelay)
		defer t.Stop()
		for {
			select {
			case <-bp.stop:
				return
			case <-bp.cfg.Halt.Done():
				return
			case <-t.C:
				if _, err := bp.BgWriterRound(); err != nil {
					bp.cfg.Logger.Error("pagecache: background writer", "err", err)
				}
			}
		}
	}()
}

// BgWriterRound runs one round of the background writer (PostgreSQL's
// BgBufferSync) and returns how many pages it wrote. It estimates how many
// clean, reusable buffers the next round's allocations will need
// (bgwriter_lru_multiplier times the smoothed recent demand), then walks
// ahead of the clock hand writing dirty buffers that the sweep would find
// reusable, until it has found that many, has written BgWriterLRUMaxPages,
// or would lap the clock. After the Halt has stopped it writes nothing and
// returns the Halt's error.
func (bp *Pool) BgWriterRound() (written int, err error) {
	s := &bp.bgw
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := bp.cfg.Halt.Err(); err != nil {
		return 0, err
	}

	hand := bp.hand.Load()
	allocs := bp.stats.allocs.Load()
	recent := float64(allocs - s.prevAllocs)
	s.prevAllocs = allocs
	if bp.cfg.BgWriterLRUMaxPages < 0 || bp.closed.Load() {
		return 0, nil
	}
	if !s.started || s.nextToClean < hand {
		// First round, or the clock overtook us: start at the hand.
		s.nextToClean = hand
		s.started = true
	}
	ahead := s.nextToClean - hand
	n := uint64(bp.nbuf)
	if ahead >= n {
		return 0, nil // a full lap ahead already
	}

	if recent > s.smoothedAlloc {
		s.smoothedAlloc = recent
	} else {
		s.smoothedAlloc += (recent - s.smoothedAlloc) / smoothingSamples
	}
	want := int(math.Ceil(s.smoothedAlloc * bp.cfg.BgWriterLRUMultiplier))
	minScan := int(float64(bp.nbuf) * float64(bp.cfg.BgWriterDelay) / float64(scanWholePoolEvery))
	want = max(want, minScan, 1)

	reusable := 0
	for toScan := n - ahead; toScan > 0 && reusable < want; toScan-- {
		id := int32(s.nextToClean % n)
		s.nextToClean++
		r, w, err := bp.syncOneBuffer(id)
		if err != nil {
			return written, err
		}
		if r {
			reusable++
		}
		if w {
			written++
			if written >= bp.cfg.BgWriterLRUMaxPages {
				bp.stats.maxWrittenClean.Add(1)
				break
			}
		}
	}
	return written, nil
}

// syncOneBuffer writes buffer id if the clock sweep could reuse it now
// (unpinned, usage count zero) and it is dirty. It reports whether the
// buffer is reusable and whether it was written.
func (bp *Pool) syncOneBuffer(id int32) (reusable, written bool, err error) {
	d := &bp.descs[id]
	st := d.lockHdr()
	if refcount(st) != 0 || usage(st) != 0 {
		d.unlockHdr(st)
		return false, false, nil
	}
	if st&(flagValid|flagDirty) != flagValid|flagDirty {
		d.unlockHdr(st)
		return true, false, nil
	}
	d.unlockHdr(st + refOne) // pin without counting a use
	d.content.RLock()
	written, err = bp.flushBuffer(id, &bp.stats.writesBgWriter)
	d.content.RUnlock()
	d.unpin()
	return true, written, err
}
