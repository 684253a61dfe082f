package txn

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heapkv/heapkv/internal/base"
)

// DefaultDeadlockTimeout is LockManagerConfig.DeadlockTimeout's default, as
// PostgreSQL's deadlock_timeout.
const DefaultDeadlockTimeout = time.Second

// numLockPartitions is the number of partitions of the lock table, as
// PostgreSQL's NUM_LOCK_PARTITIONS. A power of two.
const numLockPartitions = 16

// LockManagerConfig configures a LockManager. The zero value is valid.
type LockManagerConfig struct {
	// DeadlockTimeout is how long a waiter sleeps before it checks the
	// wait-for graph for a deadlock (deadlock_timeout). The check is much
	// more expensive than a wait, so it should exceed a typical wait.
	// 0: DefaultDeadlockTimeout (1 s).
	DeadlockTimeout time.Duration
	// LockTimeout is lock_timeout: a Wait still asleep this long after it
	// began fails with ErrLockTimeout. 0: no limit (PostgreSQL's default).
	LockTimeout time.Duration
	// Halt is the engine's fatal state: once it stops, every Wait asleep
	// returns its error at once and every later Wait returns it without
	// sleeping. nil: never stops.
	Halt *base.Halt
	// Clock arms the deadlock and lock timeout timers. nil: real time
	// (which testing/synctest also fakes).
	Clock Clock
}

// Clock is the lock manager's only source of time, so that tests can decide
// when a waiter's deadlock check runs.
type Clock interface {
	// AfterFunc calls f in its own goroutine once d has passed, unless stop
	// is called first. stop reports whether it prevented the call, as
	// time.Timer.Stop does.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// systemClock is the real-time Clock.
type systemClock struct{}

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// LockStats are counters of a LockManager, for monitoring and tests.
type LockStats struct {
	// Held is the number of xid locks held now (one per transaction that
	// began and has not ended, prepared ones included).
	Held int
	// Waiting is the number of transactions waiting now.
	Waiting int
	// Waits counts the calls of Wait that had to sleep.
	Waits uint64
	// DeadlockChecks counts the runs of the deadlock detector.
	DeadlockChecks uint64
	// Deadlocks counts the deadlocks found (the ErrDeadlock returned).
	Deadlocks uint64
	// LockTimeouts counts the waits that failed with ErrLockTimeout.
	LockTimeouts uint64
}

// LockManager is the table of transaction-id locks and the deadlock
// detector: PostgreSQL's XactLockTableInsert/XactLockTableWait and
// deadlock.c, reduced to the one kind of lock heapkv needs.
//
// # Structure
//
// Every transaction holds an exclusive lock on its own xid from its begin
// (Acquire) to its commit or abort (Release). A row version written by a
// transaction that is still in progress carries that transaction's xid, so a
// writer that meets it waits for the row by waiting for the xid (Wait); when
// the writer ends, every waiter wakes and looks at the row again (which
// version is now current is the caller's business, not the lock manager's).
// No other kind of lock exists: waiting for a row is waiting for a
// transaction, so the lock table grows with the number of transactions in
// progress, never with the data, and a Release removes the xid's entry.
//
// The table is split into numLockPartitions (16) partitions by xid (xid mod
// 16; xids are handed out in sequence, so they spread evenly). Each
// partition has its own mutex and two maps, for the xids that fall in it:
//
//   - held: xid -> wake channel. The entry exists while the xid's lock is
//     held. The channel is made by the first waiter and closed by Release,
//     which wakes all the xid's waiters at once; an xid nobody waited for
//     costs no channel.
//   - waitsFor: waiter xid -> holder xid, the edges of the wait-for graph
//     (what pg_locks shows as a lock not granted). A transaction waits for
//     one xid at a time, so each node has at most one outgoing edge, and a
//     walk along the edges from any node either ends or runs into a cycle.
//
// A holder is any transaction in progress: one that is running, one that
// is itself waiting (its own edge leads on), or a prepared transaction of
// two-phase commit, whose lock is held with no goroutine behind it (Acquire
// by recovery) and which never waits.
//
// # Rules
//
//  1. Acquire is idempotent and Release of an xid that is not held does
//     nothing. Xids are never reused, so an xid once released stays
//     unheld; recovery may re-Acquire a prepared transaction's xid before
//     the engine admits any waiter.
//  2. Wait returns nil at once, and adds no edge, if the holder's lock is
//     not held (the holder has ended). Otherwise it adds its edge, sleeps
//     with no lock held, and removes its edge before it returns, whatever
//     it returns. A second Wait by a waiter that is waiting fails with
//     ErrAlreadyWaiting; Wait for one's own xid fails at once with
//     ErrDeadlock (a cycle of one).
//  3. Release deletes the xid's entry and wakes its waiters but does not
//     touch their edges: each woken waiter removes its own. Until it does,
//     its edge is stale, and every reader of the graph (the detector,
//     WaitsFor) treats an edge whose holder is not held as absent.
//  4. A waiter still asleep DeadlockTimeout after it began waiting runs the
//     deadlock check, once per Wait, as PostgreSQL's CheckDeadLock: with
//     every partition mutex held it walks the edges from its holder. If the
//     walk comes back to the waiter, the waiter is on a cycle and is the
//     victim: still holding every partition mutex it removes its own edge,
//     then returns ErrDeadlock. Its transaction keeps its xid lock until it
//     aborts (Release); the other members of the cycle sleep on until then.
//  5. Exactly one victim per cycle. Checks are serialised by the partition
//     mutexes, and the victim breaks the cycle in the same critical section
//     in which it found it, so every later check sees no cycle. And some
//     member finds it: the waiter whose edge closed the cycle checks after
//     closing it, and meanwhile the cycle can only be broken by one of its
//     edges going away (a victim, a cancelled context, a Release).
//  6. A walk that ends (at a holder that is not waiting, or at an xid no
//     longer held), or that runs into a cycle not through the waiter, is
//     not a deadlock of the waiter, which sleeps on without further checks.
//     Members of that other cycle find it themselves (rule 5); a waiter
//     merely queued behind a cycle is woken in its turn after the victim
//     aborts.
//  7. Wait must be called with no latch or lock of the engine held (a
//     buffer's content latch in particular): the holder may need it to end.
//  8. Once the engine's Halt has stopped, every Wait asleep wakes and
//     returns an error wrapping the Halt's (base.ErrStopped and the
//     cause), and every later Wait returns it at once, held holder or not:
//     a holder whose commit record's flush failed keeps its lock, because
//     its outcome is for recovery to decide, so only the Halt can release
//     its waiters.
//  9. With LockTimeout set, a Wait still asleep that long after it began
//     removes its edge and returns ErrLockTimeout (lock_timeout). The
//     deadlock check (rule 4) runs on its own timer, whichever is shorter.
//
// # Lock order
//
// The partition mutexes are the innermost locks of the engine: while one is
// held, no other lock is taken, nothing blocks and no I/O is done. Acquire,
// Release, Held, Stats and the two halves of Wait (setup and teardown) hold
// at most one partition mutex at a time. The deadlock check and WaitsFor
// take all sixteen in increasing partition number, as PostgreSQL's
// DeadLockCheck takes its lock partitions, and release them in reverse.
//
// # Memory
//
// One map entry per transaction in progress (16 bytes plus a channel once
// somebody waits for it) and one per waiting transaction. Go maps keep the
// size of their peak, so the table stays as large as the most transactions
// ever in progress at once; the waiter's timer and channels are freed when
// Wait returns.
type LockManager struct {
	deadlockTimeout time.Duration
	lockTimeout     time.Duration // 0: none
	halt            *base.Halt
	clock           Clock

	parts [numLockPartitions]lockPartition

	waits     atomic.Uint64 // Waits that slept
	checks    atomic.Uint64 // deadlock checks run
	deadlocks atomic.Uint64 // ErrDeadlock returned
	timeouts  atomic.Uint64 // ErrLockTimeout returned
	waiting   atomic.Int64  // Waits asleep now
}

// lockPartition is one sixteenth of the lock table, padded to a cache line
// of its own so that unrelated waits do not contend.
type lockPartition struct {
	mu struct {
		sync.Mutex
		// held maps each held xid of the partition to the channel its
		// waiters sleep on: nil until the first waiter makes it, closed
		// (after the entry is deleted) by Release. Acquire adds, Release
		// deletes, Wait's setup makes the channel.
		held map[base.XID]chan struct{}
		// waitsFor maps each waiting xid of the partition to the xid it
		// waits for. Only the waiter's own Wait adds and deletes its edge.
		waitsFor map[base.XID]base.XID
		// owner maps a held subtransaction xid to its top-level xid, so
		// that the deadlock walk from "waits for a subtransaction" goes on
		// from the transaction that owns it. AcquireSub adds, Release
		// deletes.
		owner map[base.XID]base.XID
	}
	_ [64 - 32]byte
}

// NewLockManager returns an empty lock manager. It starts no goroutine and
// needs no Close.
func NewLockManager(cfg LockManagerConfig) *LockManager {
	if cfg.DeadlockTimeout <= 0 {
		cfg.DeadlockTimeout = DefaultDeadlockTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	lm := &LockManager{
		deadlockTimeout: cfg.DeadlockTimeout,
		lockTimeout:     max(cfg.LockTimeout, 0),
		halt:            cfg.Halt,
		clock:           cfg.Clock,
	}
	for i := range lm.parts {
		lm.parts[i].mu.held = make(map[base.XID]chan struct{})
		lm.parts[i].mu.waitsFor = make(map[base.XID]base.XID)
		lm.parts[i].mu.owner = make(map[base.XID]base.XID)
	}
	return lm
}

func (lm *LockManager) partition(xid base.XID) *lockPartition {
	return &lm.parts[uint64(xid)%numLockPartitions]
}

// Acquire takes the exclusive lock on xid for the transaction xid: at its
// begin, or when recovery restores a prepared transaction. It never waits
// (nobody else takes an xid's lock). Acquiring a held xid does nothing.
func (lm *LockManager) Acquire(xid base.XID) {
	p := lm.partition(xid)
	p.mu.Lock()
	if _, ok := p.mu.held[xid]; !ok {
		p.mu.held[xid] = nil
	}
	p.mu.Unlock()
}

// AcquireSub takes the lock on subtransaction xid sub of the transaction
// top. Waiting for sub ends when the subtransaction rolls back or its
// transaction ends; for deadlock detection a waiter on sub waits for top.
// Transactions always Wait under their top-level xid.
func (lm *LockManager) AcquireSub(sub, top base.XID) {
	p := lm.partition(sub)
	p.mu.Lock()
	if _, ok := p.mu.held[sub]; !ok {
		p.mu.held[sub] = nil
	}
	p.mu.owner[sub] = top
	p.mu.Unlock()
}

// Release drops xid's lock when its transaction ends (commit, abort, or the
// end of a prepared transaction) and wakes every transaction waiting for
// it. Releasing an xid that is not held does nothing.
func (lm *LockManager) Release(xid base.XID) {
	p := lm.partition(xid)
	p.mu.Lock()
	wake, ok := p.mu.held[xid]
	if ok {
		delete(p.mu.held, xid)
		delete(p.mu.owner, xid)
	}
	p.mu.Unlock()
	if wake != nil {
		close(wake) // only the deleter gets here, so only once
	}
}

// Held reports whether xid's lock is held, that is whether its transaction
// is in progress as far as the lock manager knows.
func (lm *LockManager) Held(xid base.XID) bool {
	p := lm.partition(xid)
	p.mu.Lock()
	_, ok := p.mu.held[xid]
	p.mu.Unlock()
	return ok
}

// Wait blocks transaction waiter until holder's xid lock is released, and
// returns nil then. It returns nil at once if holder's lock is not held
// (the holder has ended). If waiter is still waiting after DeadlockTimeout
// it checks for a deadlock; if waiting would close a cycle of the
// wait-for graph it returns an error matching ErrDeadlock and the caller
// must abort the transaction (rules 4 to 6 of LockManager). If ctx is done
// first it returns ctx.Err() wrapped; if LockTimeout passes first,
// ErrLockTimeout wrapped; if the Halt stops (or has stopped), the Halt's
// error wrapped (rules 8 and 9). Whatever it returns, waiter's edge is
// gone from the graph. Call it with no engine lock held (rule 7).
func (lm *LockManager) Wait(ctx context.Context, waiter, holder base.XID) error {
	if err := lm.halt.Err(); err != nil {
		return fmt.Errorf("txn: xid %d waiting for xid %d: %w", waiter, holder, err)
	}
	hp := lm.partition(holder)
	hp.mu.Lock()
	wake, held := hp.mu.held[holder]
	if !held {
		hp.mu.Unlock()
		return nil
	}
	if waiter == holder {
		hp.mu.Unlock()
		lm.deadlocks.Add(1)
		return fmt.Errorf("%w: xid %d waits for itself", ErrDeadlock, waiter)
	}
	if err := ctx.Err(); err != nil {
		hp.mu.Unlock()
		return fmt.Errorf("txn: xid %d waiting for xid %d: %w", waiter, holder, err)
	}
	if wake == nil {
		wake = make(chan struct{})
		hp.mu.held[holder] = wake
	}
	hp.mu.Unlock()

	// The holder may end from here on; its channel is closed then, and
	// our edge is stale until we remove it (rule 3).
	wp := lm.partition(waiter)
	wp.mu.Lock()
	if cur, ok := wp.mu.waitsFor[waiter]; ok {
		wp.mu.Unlock()
		return fmt.Errorf("%w: xid %d waits for xid %d and is asked to wait for xid %d",
			ErrAlreadyWaiting, waiter, cur, holder)
	}
	wp.mu.waitsFor[waiter] = holder
	wp.mu.Unlock()

	lm.waits.Add(1)
	lm.waiting.Add(1)
	defer lm.waiting.Add(-1)
	timeout := make(chan struct{})
	stop := lm.clock.AfterFunc(lm.deadlockTimeout, func() { close(timeout) })
	defer stop()
	var lockTimeout chan struct{} // nil, never ready, without a limit
	if lm.lockTimeout > 0 {
		lockTimeout = make(chan struct{})
		ch := lockTimeout
		stopLT := lm.clock.AfterFunc(lm.lockTimeout, func() { close(ch) })
		defer stopLT()
	}
	for {
		select {
		case <-wake:
			lm.removeEdge(waiter)
			return nil
		case <-ctx.Done():
			lm.removeEdge(waiter)
			return fmt.Errorf("txn: xid %d waiting for xid %d: %w", waiter, holder, ctx.Err())
		case <-lm.halt.Done():
			lm.removeEdge(waiter)
			return fmt.Errorf("txn: xid %d waiting for xid %d: %w", waiter, holder, lm.halt.Err())
		case <-lockTimeout:
			lm.removeEdge(waiter)
			lm.timeouts.Add(1)
			return fmt.Errorf("%w: xid %d waited %v for xid %d", ErrLockTimeout, waiter, lm.lockTimeout, holder)
		case <-timeout:
			timeout = nil // the check runs once per Wait (rule 6)
			if err := lm.checkDeadlock(waiter); err != nil {
				return err // the edge is gone already
			}
		}
	}
}

// removeEdge deletes waiter's edge from the wait-for graph.
func (lm *LockManager) removeEdge(waiter base.XID) {
	p := lm.partition(waiter)
	p.mu.Lock()
	delete(p.mu.waitsFor, waiter)
	p.mu.Unlock()
}

// checkDeadlock is the deadlock detector, run by waiter after
// DeadlockTimeout. It walks the wait-for graph from waiter under every
// partition mutex; if the walk comes back to waiter, it removes waiter's
// edge and returns an ErrDeadlock that names the cycle.
func (lm *LockManager) checkDeadlock(waiter base.XID) error {
	lm.checks.Add(1)
	lm.lockAll()
	defer lm.unlockAll()
	n := lm.cycleLenLocked(waiter)
	if n == 0 {
		return nil
	}
	var b strings.Builder
	x := waiter
	for i := range n {
		next, _ := lm.waitsForLocked(x)
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "xid %d waits for xid %d", x, next)
		x = next
	}
	delete(lm.partition(waiter).mu.waitsFor, waiter)
	lm.deadlocks.Add(1)
	return fmt.Errorf("%w: %s; xid %d is the victim", ErrDeadlock, b.String(), waiter)
}

// cycleLenLocked returns the length of the cycle of live edges (rule 3)
// through waiter, or 0 if waiter is on none. Every partition mutex must be
// held.
func (lm *LockManager) cycleLenLocked(waiter base.XID) int {
	edges := 0
	for i := range lm.parts {
		edges += len(lm.parts[i].mu.waitsFor)
	}
	// The nodes of a cycle all wait, so a cycle through waiter has at most
	// edges steps; a longer walk circles in a cycle that waiter is not on.
	x := waiter
	for n := 1; n <= edges; n++ {
		next, ok := lm.waitsForLocked(x)
		if !ok {
			return 0
		}
		if next == waiter {
			return n
		}
		x = next
	}
	return 0
}

// waitsForLocked returns the transaction x waits for, if x has a live edge:
// one whose holder is held. A holder that is a subtransaction stands for
// its top-level transaction. Every partition mutex must be held.
func (lm *LockManager) waitsForLocked(x base.XID) (base.XID, bool) {
	holder, ok := lm.partition(x).mu.waitsFor[x]
	if !ok {
		return 0, false
	}
	hp := lm.partition(holder)
	if _, held := hp.mu.held[holder]; !held {
		return 0, false
	}
	if top, ok := hp.mu.owner[holder]; ok {
		return top, true
	}
	return holder, true
}

// lockAll takes every partition mutex, in increasing partition number.
func (lm *LockManager) lockAll() {
	for i := range lm.parts {
		lm.parts[i].mu.Lock()
	}
}

// unlockAll releases every partition mutex, in decreasing partition number.
func (lm *LockManager) unlockAll() {
	for i := len(lm.parts) - 1; i >= 0; i-- {
		lm.parts[i].mu.Unlock()
	}
}

// WaitsFor returns a consistent snapshot of the wait-for graph: for each
// waiting transaction, the xid it waits for (pg_locks' ungranted locks).
// Stale edges (rule 3) are left out. The map is the caller's.
func (lm *LockManager) WaitsFor() map[base.XID]base.XID {
	lm.lockAll()
	defer lm.unlockAll()
	g := make(map[base.XID]base.XID)
	for i := range lm.parts {
		for w := range lm.parts[i].mu.waitsFor {
			if h, ok := lm.waitsForLocked(w); ok {
				g[w] = h
			}
		}
	}
	return g
}

// Stats returns the lock manager's counters. Held is summed one partition
// at a time, so under concurrent change it is approximate.
func (lm *LockManager) Stats() LockStats {
	held := 0
	for i := range lm.parts {
		p := &lm.parts[i]
		p.mu.Lock()
		held += len(p.mu.held)
		p.mu.Unlock()
	}
	return LockStats{
		Held:           held,
		Waiting:        int(lm.waiting.Load()),
		Waits:          lm.waits.Load(),
		DeadlockChecks: lm.checks.Load(),
		Deadlocks:      lm.deadlocks.Load(),
		LockTimeouts:   lm.timeouts.Load(),
	}
}
