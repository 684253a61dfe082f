package txn

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
)

// assigning marks a proc whose transaction is being given an xid right now;
// a snapshot that meets it waits the few instructions until the xid lands.
const assigning = ^uint64(0)

// Proc is a running transaction's entry in the ProcArray (PostgreSQL's
// PGPROC, reduced to what snapshots need). Procs are reused: the array holds
// every proc ever handed out, so its length is the peak number of
// concurrent transactions, never a function of data size.
type Proc struct {
	// xid is the transaction's xid once it has one (0 before), assigning
	// while it is being given one. Written by the owner without a lock;
	// cleared at commit or abort under the ProcArray's exclusive lock.
	xid atomic.Uint64
	// xmin is the oldest xid the transaction's snapshots may still need;
	// vacuum must keep every version such a snapshot could see. Written by
	// the owner, read by Horizon.
	xmin atomic.Uint64
	// subxids are the transaction's live subtransaction xids, ascending,
	// replaced whole (copy on write) by the owner; subAssigning is set
	// while a new one is being handed out, as xid's assigning marker.
	subxids      atomic.Pointer[[]base.XID]
	subAssigning atomic.Bool
	idx          int // position in the array; fixed
}

// subs returns the live subtransaction xids. The slice must not be changed.
func (p *Proc) subs() []base.XID {
	if s := p.subxids.Load(); s != nil {
		return *s
	}
	return nil
}

// addSub appends a subtransaction xid (owner only).
func (p *Proc) addSub(x base.XID) {
	s := append(slices.Clone(p.subs()), x)
	p.subxids.Store(&s)
}

// setSubs replaces the subtransaction xids (owner only).
func (p *Proc) setSubs(xids []base.XID) {
	if len(xids) == 0 {
		p.subxids.Store(nil)
		return
	}
	s := slices.Clone(xids)
	p.subxids.Store(&s)
}

// XID returns the proc's xid, or InvalidXID.
func (p *Proc) XID() base.XID {
	v := p.xid.Load()
	if v == assigning {
		return base.InvalidXID
	}
	return base.XID(v)
}

// ProcArray tracks the running transactions and hands out snapshots
// (PostgreSQL's procarray.c).
//
// Snapshots take the lock in share mode, transactions with an xid leave it
// under the exclusive lock: so a snapshot sees any set of commits either
// wholly or not at all, and if it sees a commit it sees every commit that
// came before. Getting an xid takes no lock (see Proc.xid).
type ProcArray struct {
	mu sync.RWMutex // share: snapshots, Horizon; exclusive: ending a transaction with an xid
	// procs is every Proc ever handed out; appended under freeMu, read by
	// snapshots through procsView.
	procsView atomic.Pointer[[]*Proc]
	// latestCompleted is the highest xid that has ended; written under
	// mu exclusive.
	latestCompleted atomic.Uint64

	freeMu sync.Mutex // guards free and growing procs
	free   []*Proc
}

// NewProcArray returns an empty ProcArray. latestCompleted is the highest
// xid known to have ended (next xid - 1 after recovery).
func NewProcArray(latestCompleted base.XID) *ProcArray {
	pa := &ProcArray{}
	empty := []*Proc{}
	pa.procsView.Store(&empty)
	pa.latestCompleted.Store(uint64(latestCompleted))
	return pa
}

// Join gives a beginning transaction a proc.
func (pa *ProcArray) Join() *Proc {
	pa.freeMu.Lock()
	defer pa.freeMu.Unlock()
	if n := len(pa.free); n > 0 {
		p := pa.free[n-1]
		pa.free = pa.free[:n-1]
		return p
	}
	old := *pa.procsView.Load()
	p := &Proc{idx: len(old)}
	grown := append(slices.Clip(old), p)
	pa.procsView.Store(&grown)
	return p
}

// Leave returns a proc whose transaction has ended. A transaction with an
// xid must have called EndXID first.
func (pa *ProcArray) Leave(p *Proc) {
	p.xmin.Store(0)
	if p.xid.Load() != 0 {
		panic("txn: proc leaves the ProcArray with its xid still set")
	}
	pa.freeMu.Lock()
	pa.free = append(pa.free, p)
	pa.freeMu.Unlock()
}

// BeginAssign marks p as being given an xid; call before taking the xid from
// the counter, then SetXID. Together they let snapshots treat the xid as
// running from the instant it exists.
func (pa *ProcArray) BeginAssign(p *Proc) { p.xid.Store(assigning) }

// SetXID completes BeginAssign.
func (pa *ProcArray) SetXID(p *Proc, xid base.XID) { p.xid.Store(uint64(xid)) }

// EndXID removes p's xid from the running set, atomically for snapshots,
// after the caller has recorded the outcome in the commit log.
func (pa *ProcArray) EndXID(p *Proc, xid base.XID) {
	pa.mu.Lock()
	p.xid.Store(0)
	if uint64(xid) > pa.latestCompleted.Load() {
		pa.latestCompleted.Store(uint64(xid))
	}
	pa.mu.Unlock()
}

// TakeSnapshot fills dst with a snapshot and records its xmin as p's (when p
// is not nil and has no older xmin yet). It reuses dst.XIP's storage, so a
// transaction that takes one snapshot per statement allocates only when the
// number of running transactions grows.
//
// A proc in the middle of getting an xid (the assigning marker) must be
// waited out, but never while holding the lock: the owner may be descheduled
// in that window for a whole scheduler slice, and EndXID, which needs the
// lock exclusively, would stall every commit behind the waiting snapshot.
// So the snapshot lets go, waits for the marker to clear, and starts over.
func (pa *ProcArray) TakeSnapshot(dst *Snapshot, p *Proc) {
	for {
		if pa.trySnapshot(dst, p) {
			return
		}
	}
}

// trySnapshot takes a snapshot, or reports false, having waited (without
// the lock) for a proc that was being given an xid.
func (pa *ProcArray) trySnapshot(dst *Snapshot, p *Proc) bool {
	xip := dst.XIP[:0]
	pa.mu.RLock()
	xmax := base.XID(pa.latestCompleted.Load() + 1)
	xmin := xmax
	for _, q := range *pa.procsView.Load() {
		v := q.xid.Load()
		if v == assigning || q.subAssigning.Load() {
			pa.mu.RUnlock()
			dst.XIP = xip
			for spins := 0; q.xid.Load() == assigning || q.subAssigning.Load(); spins++ {
				if spins > 20 {
					runtime.Gosched()
				}
			}
			return false
		}
		x := base.XID(v)
		if x == base.InvalidXID || x >= xmax {
			continue
		}
		xip = append(xip, x)
		xmin = min(xmin, x)
		for _, sx := range q.subs() {
			if sx < xmax {
				xip = append(xip, sx)
			}
		}
	}
	if p != nil && p.xmin.Load() == 0 {
		p.xmin.Store(uint64(xmin))
	}
	pa.mu.RUnlock()
	slices.Sort(xip)
	dst.XMin, dst.XMax, dst.XIP = xmin, xmax, xip
	return true
}

// setLatestCompleted sets the highest ended xid after recovery.
func (pa *ProcArray) setLatestCompleted(x base.XID) {
	pa.mu.Lock()
	pa.latestCompleted.Store(uint64(x))
	pa.mu.Unlock()
}

// Horizon returns the oldest xid that any running transaction or snapshot
// may still need to judge: versions deleted by transactions that committed
// before it are dead to everyone (vacuum's OldestXmin).
func (pa *ProcArray) Horizon() base.XID {
	pa.mu.RLock()
	defer pa.mu.RUnlock()
	h := base.XID(pa.latestCompleted.Load() + 1)
	for _, q := range *pa.procsView.Load() {
		if v := q.xid.Load(); v != 0 && v != assigning {
			h = min(h, base.XID(v))
		}
		if v := q.xmin.Load(); v != 0 {
			h = min(h, base.XID(v))
		}
	}
	return h
}

// OldestRunning returns the smallest xid that is running or may still be
// handed out, given next, the xid counter read by the caller BEFORE this
// call: every xid at or above next is handed out later, and every xid below
// it was taken from the counter by a proc already marked assigning (which
// this waits out, as TakeSnapshot does) or already published. So an xid
// below the result has ended by the time this returns, with its outcome in
// the commit log. (Running, which skips assigning procs, cannot tell that:
// an xid taken from the counter but not yet published is missed.)
func (pa *ProcArray) OldestRunning(next base.XID) base.XID {
	oldest := next
	for _, q := range *pa.procsView.Load() {
		v := q.xid.Load()
		for spins := 0; v == assigning; spins++ {
			if spins > 20 {
				runtime.Gosched()
			}
			v = q.xid.Load()
		}
		// A subtransaction's xid is larger than its parent's, which is
		// published first, so the parent's bounds it.
		if v != 0 {
			oldest = min(oldest, base.XID(v))
		}
	}
	return oldest
}

// Running returns the xids of the running transactions (for tests and
// stats).
func (pa *ProcArray) Running() []base.XID {
	var xids []base.XID
	for _, q := range *pa.procsView.Load() {
		if x := q.XID(); x != base.InvalidXID {
			xids = append(xids, x)
		}
	}
	slices.Sort(xids)
	return xids
}

// Active returns how many procs are in use (commit_siblings counts these).
func (pa *ProcArray) Active() int {
	pa.freeMu.Lock()
	defer pa.freeMu.Unlock()
	return len(*pa.procsView.Load()) - len(pa.free)
}
