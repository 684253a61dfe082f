package txn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heapkv/heapkv/internal/base"
)

// Most tests run in a synctest bubble: time is fake, so a deadlock timeout
// fires exactly when the test says, and synctest.Wait tells when every
// waiter is asleep. The tests that hunt for races (TestLockDeadlockCycles,
// TestLockNoFalseDeadlock) run on real time instead, and assert only what
// does not depend on timing. Randomized tests take -seed (procarray_test.go).

// waitResult is what one Wait returned, to waiter number i.
type waitResult struct {
	i   int
	err error
}

// goWait runs lm.Wait(ctx, waiter, holder) in a goroutine and sends the
// result, tagged i, on out.
func goWait(ctx context.Context, lm *LockManager, i int, waiter, holder base.XID, out chan<- waitResult) {
	go func() { out <- waitResult{i, lm.Wait(ctx, waiter, holder)} }()
}

// recvResult returns the next result, failing the test if none comes within
// a long time (fake time in a bubble).
func recvResult(t *testing.T, results <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no Wait returned within 30 s")
		return waitResult{}
	}
}

// noResult fails the test if a result is pending.
func noResult(t *testing.T, results <-chan waitResult) {
	t.Helper()
	select {
	case r := <-results:
		t.Fatalf("waiter %d returned (err %v) but should still be waiting", r.i, r.err)
	default:
	}
}

// releaseAtEnd releases xids when the test ends, so that no waiter is left
// asleep if it fails half way.
func releaseAtEnd(t *testing.T, lm *LockManager, xids ...base.XID) {
	t.Cleanup(func() {
		for _, x := range xids {
			lm.Release(x)
		}
	})
}

func wantGraph(t *testing.T, lm *LockManager, want map[base.XID]base.XID) {
	t.Helper()
	if got := lm.WaitsFor(); !maps.Equal(got, want) {
		t.Fatalf("WaitsFor() = %v, want %v", got, want)
	}
}

func TestLockAcquireReleaseHeld(t *testing.T) {
	lm := NewLockManager(LockManagerConfig{})
	if lm.Held(1) {
		t.Fatal("xid 1 held before Acquire")
	}
	lm.Acquire(1)
	lm.Acquire(1)  // idempotent
	lm.Acquire(17) // same partition as 1
	lm.Acquire(2)
	if !lm.Held(1) || !lm.Held(17) || !lm.Held(2) {
		t.Fatal("acquired xids not held")
	}
	if s := lm.Stats(); s.Held != 3 {
		t.Fatalf("Stats().Held = %d, want 3", s.Held)
	}
	lm.Release(1)
	if lm.Held(1) || !lm.Held(17) {
		t.Fatalf("after Release(1): Held(1)=%v Held(17)=%v", lm.Held(1), lm.Held(17))
	}
	lm.Release(1) // no-op
	lm.Release(99)
	lm.Release(17)
	lm.Release(2)
	if s := lm.Stats(); s != (LockStats{}) {
		t.Fatalf("Stats() = %+v after releasing everything, want zero", s)
	}
}

func TestLockWaitReturnsWhenHolderReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second})
		for x := range base.XID(5) {
			lm.Acquire(x + 1)
		}
		releaseAtEnd(t, lm, 1, 2, 3, 4, 5)
		results := make(chan waitResult, 3)
		for i := range 3 {
			goWait(t.Context(), lm, i, base.XID(i+2), 1, results)
		}
		// Long past the deadlock timeout: the waiters checked, found
		// nothing, and sleep on.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		noResult(t, results)
		wantGraph(t, lm, map[base.XID]base.XID{2: 1, 3: 1, 4: 1})
		if s := lm.Stats(); s.Waiting != 3 || s.Waits != 3 || s.DeadlockChecks != 3 || s.Deadlocks != 0 {
			t.Fatalf("Stats() = %+v, want 3 waiting, 3 waits, 3 checks, no deadlock", s)
		}

		lm.Release(1) // one Release wakes all three
		for range 3 {
			if r := recvResult(t, results); r.err != nil {
				t.Fatalf("waiter %d: %v", r.i, r.err)
			}
		}
		wantGraph(t, lm, map[base.XID]base.XID{})
		if s := lm.Stats(); s.Waiting != 0 || s.Held != 4 {
			t.Fatalf("Stats() = %+v, want nobody waiting and 4 held", s)
		}
	})
}

func TestLockWaitUnheldReturnsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{})
		lm.Acquire(1)
		lm.Acquire(3)
		lm.Release(3)
		releaseAtEnd(t, lm, 1)
		start := time.Now()
		for _, holder := range []base.XID{2, 3} { // never held; ended
			if err := lm.Wait(t.Context(), 1, holder); err != nil {
				t.Fatalf("Wait for unheld xid %d: %v", holder, err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("Wait for unheld xids took %v, want no time", d)
		}
		wantGraph(t, lm, map[base.XID]base.XID{})
		if s := lm.Stats(); s.Waits != 0 || s.Waiting != 0 {
			t.Fatalf("Stats() = %+v, want no wait", s)
		}
	})
}

func TestLockWaitHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second})
		for x := range base.XID(3) {
			lm.Acquire(x + 1)
		}
		releaseAtEnd(t, lm, 1, 2, 3)
		results := make(chan waitResult, 1)

		// Cancelled while asleep.
		ctx, cancel := context.WithCancel(t.Context())
		goWait(ctx, lm, 0, 2, 1, results)
		synctest.Wait()
		wantGraph(t, lm, map[base.XID]base.XID{2: 1})
		cancel()
		r := recvResult(t, results)
		if !errors.Is(r.err, context.Canceled) || errors.Is(r.err, ErrDeadlock) {
			t.Fatalf("Wait after cancel = %v, want context.Canceled", r.err)
		}
		wantGraph(t, lm, map[base.XID]base.XID{})
		if !lm.Held(1) || lm.Stats().Waiting != 0 {
			t.Fatalf("after cancel: Held(1)=%v, Stats()=%+v", lm.Held(1), lm.Stats())
		}

		// A deadline past the deadlock timeout: the check runs, finds no
		// cycle, and the deadline ends the wait.
		ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		if err := lm.Wait(ctx, 2, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with deadline = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("Wait with a 3 s deadline took %v", d)
		}
		if s := lm.Stats(); s.DeadlockChecks != 1 || s.Deadlocks != 0 {
			t.Fatalf("Stats() = %+v, want 1 check (by the wait that passed 1 s), no deadlock", s)
		}
		wantGraph(t, lm, map[base.XID]base.XID{})

		// Done before the call: no wait, no edge.
		waits := lm.Stats().Waits
		if err := lm.Wait(ctx, 3, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with an expired context = %v, want context.DeadlineExceeded", err)
		}
		if lm.Stats().Waits != waits {
			t.Fatal("Wait with an expired context slept")
		}

		// The holder is still waitable after all that.
		goWait(t.Context(), lm, 0, 3, 1, results)
		synctest.Wait()
		wantGraph(t, lm, map[base.XID]base.XID{3: 1})
		lm.Release(1)
		if r := recvResult(t, results); r.err != nil {
			t.Fatalf("Wait after Release: %v", r.err)
		}
	})
}

func TestLockWaitOnPreparedTransaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{DeadlockTimeout: 10 * time.Millisecond})
		const prepared, waiter = 40, 41
		lm.Acquire(prepared) // restored by recovery: no goroutine, never waits
		lm.Acquire(waiter)
		releaseAtEnd(t, lm, prepared, waiter)
		results := make(chan waitResult, 1)
		goWait(t.Context(), lm, 0, waiter, prepared, results)
		time.Sleep(time.Hour)
		synctest.Wait()
		noResult(t, results)
		if s := lm.Stats(); s.DeadlockChecks != 1 || s.Deadlocks != 0 {
			t.Fatalf("Stats() = %+v, want one check, no deadlock", s)
		}
		lm.Release(prepared) // COMMIT PREPARED
		if r := recvResult(t, results); r.err != nil {
			t.Fatalf("Wait on prepared transaction: %v", r.err)
		}
	})
}

func TestLockChainIsNotDeadlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second})
		const a, b, c = 1, 2, 3
		for _, x := range []base.XID{a, b, c} {
			lm.Acquire(x)
		}
		releaseAtEnd(t, lm, a, b, c)
		results := make(chan waitResult, 2)
		goWait(t.Context(), lm, a, a, b, results)
		goWait(t.Context(), lm, b, b, c, results)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		noResult(t, results)
		wantGraph(t, lm, map[base.XID]base.XID{a: b, b: c})
		if s := lm.Stats(); s.DeadlockChecks != 2 || s.Deadlocks != 0 {
			t.Fatalf("Stats() = %+v, want 2 checks, no deadlock", s)
		}
		lm.Release(c)
		if r := recvResult(t, results); r.i != b || r.err != nil {
			t.Fatalf("after Release(c): waiter %d returned %v, want b returning nil", r.i, r.err)
		}
		synctest.Wait()
		noResult(t, results)
		lm.Release(b)
		if r := recvResult(t, results); r.i != a || r.err != nil {
			t.Fatalf("after Release(b): waiter %d returned %v, want a returning nil", r.i, r.err)
		}
	})
}

func TestLockWaitMisuse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{})
		for x := range base.XID(3) {
			lm.Acquire(x + 1)
		}
		releaseAtEnd(t, lm, 1, 2, 3)
		start := time.Now()
		if err := lm.Wait(t.Context(), 1, 1); !errors.Is(err, ErrDeadlock) {
			t.Fatalf("Wait for one's own xid = %v, want ErrDeadlock", err)
		}
		if d := time.Since(start); d != 0 || lm.Stats().Waits != 0 {
			t.Fatalf("Wait for one's own xid slept %v (Stats() %+v), want an error at once", d, lm.Stats())
		}
		results := make(chan waitResult, 1)
		goWait(t.Context(), lm, 0, 2, 1, results)
		synctest.Wait()
		if err := lm.Wait(t.Context(), 2, 3); !errors.Is(err, ErrAlreadyWaiting) {
			t.Fatalf("second Wait of a waiting xid = %v, want ErrAlreadyWaiting", err)
		}
		wantGraph(t, lm, map[base.XID]base.XID{2: 1}) // the first wait's edge survives
		lm.Release(1)
		if r := recvResult(t, results); r.err != nil {
			t.Fatalf("first Wait: %v", r.err)
		}
	})
}

// runCycle makes len(xids) transactions wait in a ring, i for i+1, each
// starting after delays[i], and checks PostgreSQL's outcome: exactly one of
// them gets ErrDeadlock and leaves the graph; when the test aborts it
// (Release), the one waiting for it proceeds and ends, then the next, round
// the ring. settle waits until every goroutine that can run has run (in a
// bubble) or does nothing (on real time, where only the order of results
// is checked).
func runCycle(t *testing.T, lm *LockManager, xids []base.XID, delays []time.Duration, settle func()) {
	t.Helper()
	n := len(xids)
	for _, x := range xids {
		lm.Acquire(x)
	}
	releaseAtEnd(t, lm, xids...)
	results := make(chan waitResult, n)
	for i := range n {
		go func() {
			time.Sleep(delays[i])
			results <- waitResult{i, lm.Wait(t.Context(), xids[i], xids[(i+1)%n])}
		}()
	}

	r := recvResult(t, results)
	if !errors.Is(r.err, ErrDeadlock) {
		t.Fatalf("first Wait to return: waiter %d, err %v; want ErrDeadlock", r.i, r.err)
	}
	v := r.i
	if !strings.Contains(r.err.Error(), fmt.Sprintf("xid %d is the victim", xids[v])) {
		t.Fatalf("deadlock error %q does not name victim xid %d", r.err, xids[v])
	}
	// The cycle was complete when the victim found it, and nobody else can
	// have left it: every other edge is in place.
	want := make(map[base.XID]base.XID)
	for i := range n {
		if i != v {
			want[xids[i]] = xids[(i+1)%n]
		}
	}
	settle()
	noResult(t, results)
	wantGraph(t, lm, want)

	lm.Release(xids[v]) // the victim's transaction aborts
	for k := 1; k < n; k++ {
		i := (v - k + n) % n // the one waiting for the xid just released
		r := recvResult(t, results)
		if r.i != i || r.err != nil {
			t.Fatalf("waiter %d returned %v; want waiter %d returning nil (victim %d)", r.i, r.err, i, v)
		}
		settle()
		noResult(t, results)
		lm.Release(xids[i]) // it commits
	}
	wantGraph(t, lm, map[base.XID]base.XID{})
	if s := lm.Stats(); s.Held != 0 || s.Waiting != 0 || s.Deadlocks != 1 || s.Waits != uint64(n) {
		t.Fatalf("Stats() = %+v, want nothing held or waiting, 1 deadlock, %d waits", s, n)
	}
}

// TestLockDeadlockCycles runs rings of 2 and 3 transactions on real time,
// with deadlock timeouts of a few milliseconds and random start delays, so
// that checks, joins and releases race.
func TestLockDeadlockCycles(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("ring%d", n), func(t *testing.T) {
			for iter := range 50 {
				timeout := time.Duration(500+rng.IntN(2500)) * time.Microsecond
				lm := NewLockManager(LockManagerConfig{DeadlockTimeout: timeout})
				xids := make([]base.XID, n)
				delays := make([]time.Duration, n)
				for i := range n {
					xids[i] = base.XID(1000*iter + 7*i + 1)
					delays[i] = time.Duration(rng.Int64N(int64(2 * timeout)))
				}
				runCycle(t, lm, xids, delays, func() {})
				if t.Failed() {
					return
				}
			}
		})
	}
}

// TestLockDeadlockCyclesSynctest runs the rings of TestLockDeadlockCycles in
// fake time, where settle can prove that nobody else returns.
func TestLockDeadlockCyclesSynctest(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, n := range []int{2, 3, 5} {
		for iter := range 50 {
			xids := make([]base.XID, n)
			delays := make([]time.Duration, n)
			for i := range n {
				xids[i] = base.XID(rng.Uint64N(1<<40) + 1)
				delays[i] = time.Duration(rng.IntN(3000)) * time.Millisecond
			}
			synctest.Test(t, func(t *testing.T) {
				lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second})
				runCycle(t, lm, xids, delays, synctest.Wait)
			})
			if t.Failed() {
				t.Fatalf("ring of %d, iteration %d: xids %v, delays %v", n, iter, xids, delays)
			}
		}
	}
}

// TestLockDeadlockDefaultTimeout checks that the zero config waits
// deadlock_timeout's default, 1 s, before it looks for a cycle.
func TestLockDeadlockDefaultTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{})
		lm.Acquire(1)
		lm.Acquire(2)
		releaseAtEnd(t, lm, 1, 2)
		results := make(chan waitResult, 2)
		goWait(t.Context(), lm, 1, 1, 2, results)
		goWait(t.Context(), lm, 2, 2, 1, results)
		time.Sleep(DefaultDeadlockTimeout - time.Nanosecond)
		synctest.Wait()
		noResult(t, results)
		if c := lm.Stats().DeadlockChecks; c != 0 {
			t.Fatalf("%d deadlock checks before deadlock_timeout", c)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		r := recvResult(t, results)
		if !errors.Is(r.err, ErrDeadlock) {
			t.Fatalf("at deadlock_timeout: waiter %d returned %v, want ErrDeadlock", r.i, r.err)
		}
		noResult(t, results)
		lm.Release(base.XID(r.i))
		if r := recvResult(t, results); r.err != nil {
			t.Fatalf("survivor: %v", r.err)
		}
	})
}

// manualClock is a Clock whose timers fire only when the test says.
type manualClock struct {
	timers chan *manualTimer // each new timer, in the order armed
}

type manualTimer struct {
	f  func()
	mu sync.Mutex
	// done: fired or stopped.
	done bool
}

func (c *manualClock) AfterFunc(_ time.Duration, f func()) func() bool {
	tm := &manualTimer{f: f}
	c.timers <- tm
	return func() bool {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		stopped := !tm.done
		tm.done = true
		return stopped
	}
}

func (tm *manualTimer) fire() {
	tm.mu.Lock()
	fire := !tm.done
	tm.done = true
	tm.mu.Unlock()
	if fire {
		tm.f()
	}
}

// TestLockDeadlockVictimIsTheDetector drives the deadlock timers by hand: A
// waits for B, then B for A; A's timer fires first, so A finds the cycle and
// is the victim although B closed it. B's later check finds it broken.
func TestLockDeadlockVictimIsTheDetector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := &manualClock{timers: make(chan *manualTimer, 4)}
		lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Millisecond, Clock: clk})
		const a, b = 10, 20
		lm.Acquire(a)
		lm.Acquire(b)
		releaseAtEnd(t, lm, a, b)
		results := make(chan waitResult, 2)
		goWait(t.Context(), lm, a, a, b, results)
		timerA := <-clk.timers
		goWait(t.Context(), lm, b, b, a, results)
		timerB := <-clk.timers
		time.Sleep(time.Hour) // real (fake) time does not matter
		synctest.Wait()
		noResult(t, results)
		if c := lm.Stats().DeadlockChecks; c != 0 {
			t.Fatalf("%d deadlock checks before any timer fired", c)
		}
		wantGraph(t, lm, map[base.XID]base.XID{a: b, b: a})

		timerA.fire()
		r := recvResult(t, results)
		if r.i != a || !errors.Is(r.err, ErrDeadlock) {
			t.Fatalf("after A's timer: waiter %d returned %v, want A with ErrDeadlock", r.i, r.err)
		}
		const msg = "txn: deadlock detected: xid 10 waits for xid 20; xid 20 waits for xid 10; xid 10 is the victim"
		if r.err.Error() != msg {
			t.Fatalf("error %q, want %q", r.err, msg)
		}
		wantGraph(t, lm, map[base.XID]base.XID{b: a})

		timerB.fire()
		synctest.Wait()
		noResult(t, results)
		if s := lm.Stats(); s.DeadlockChecks != 2 || s.Deadlocks != 1 {
			t.Fatalf("Stats() = %+v, want 2 checks, 1 deadlock", s)
		}
		lm.Release(a) // A aborts
		if r := recvResult(t, results); r.i != b || r.err != nil {
			t.Fatalf("after A aborts: waiter %d returned %v, want B returning nil", r.i, r.err)
		}
	})
}

// TestLockDeadlockRandomGraphs builds random wait-for graphs (each
// transaction waits for a random other one or for nothing; waits start at
// random times) and compares the outcome with cycles found naively: exactly
// one victim on each cycle, nobody else returns, and the graph left is the
// one built minus the victims' edges.
func TestLockDeadlockRandomGraphs(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	for iter := range 200 {
		n := 2 + rng.IntN(11)
		target := make([]int, n) // -1: running or prepared, not waiting
		delays := make([]time.Duration, n)
		for i := range n {
			target[i] = -1
			if rng.IntN(10) < 7 {
				j := rng.IntN(n - 1)
				if j >= i {
					j++
				}
				target[i] = j
			}
			delays[i] = time.Duration(rng.IntN(3000)) * time.Millisecond
		}
		// cycle[i] is the smallest member of i's cycle, or -1.
		cycle := make([]int, n)
		for i := range n {
			cycle[i] = -1
			j, smallest := i, i
			for range n {
				if j = target[j]; j < 0 {
					break
				}
				smallest = min(smallest, j)
				if j == i {
					cycle[i] = smallest
					break
				}
			}
		}
		synctest.Test(t, func(t *testing.T) {
			lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second})
			xid := func(i int) base.XID { return base.XID(100 + i) }
			for i := range n {
				lm.Acquire(xid(i))
				releaseAtEnd(t, lm, xid(i))
			}
			results := make(chan waitResult, n)
			waiting := 0
			for i := range n {
				if target[i] >= 0 {
					waiting++
					go func() {
						time.Sleep(delays[i])
						results <- waitResult{i, lm.Wait(t.Context(), xid(i), xid(target[i]))}
					}()
				}
			}
			time.Sleep(5 * time.Second)
			synctest.Wait()

			victims := make(map[int]int) // cycle -> victims on it
			graph := make(map[base.XID]base.XID)
			for i := range n {
				if target[i] >= 0 {
					graph[xid(i)] = xid(target[i])
				}
			}
			for len(results) > 0 {
				r := <-results
				if cycle[r.i] < 0 || !errors.Is(r.err, ErrDeadlock) {
					t.Fatalf("waiter %d (not on a cycle: %v) returned %v", r.i, cycle[r.i] < 0, r.err)
				}
				victims[cycle[r.i]]++
				delete(graph, xid(r.i))
			}
			deadlocks := 0
			for i := range n {
				if cycle[i] == i {
					deadlocks++
					if victims[i] != 1 {
						t.Fatalf("cycle through %d: %d victims, want 1", i, victims[i])
					}
				}
			}
			wantGraph(t, lm, graph)
			if s := lm.Stats(); s.Deadlocks != uint64(deadlocks) {
				t.Fatalf("Stats().Deadlocks = %d, want %d", s.Deadlocks, deadlocks)
			}
			for i := range n {
				lm.Release(xid(i))
			}
			for range waiting - deadlocks {
				if r := recvResult(t, results); r.err != nil {
					t.Fatalf("waiter %d after everything ended: %v", r.i, r.err)
				}
			}
		})
		if t.Failed() {
			t.Fatalf("iteration %d: target %v, delays %v", iter, target, delays)
		}
	}
}

// TestLockDetectorOnHandBuiltGraphs runs the detector on graphs written
// into the table directly: a graph as it is for a moment after a Release
// and before the woken waiters remove their edges (a stale edge to an xid
// no longer held is no edge), and a waiter queued behind a cycle it is not
// on.
func TestLockDetectorOnHandBuiltGraphs(t *testing.T) {
	lm := NewLockManager(LockManagerConfig{})
	edge := func(w, h base.XID) {
		p := lm.partition(w)
		p.mu.Lock()
		p.mu.waitsFor[w] = h
		p.mu.Unlock()
	}
	for x := range base.XID(6) {
		lm.Acquire(x + 1)
	}
	edge(1, 2)
	edge(2, 3)
	edge(3, 1)
	lm.lockAll()
	n := lm.cycleLenLocked(2)
	lm.unlockAll()
	if n != 3 {
		t.Fatalf("cycle 1 -> 2 -> 3 -> 1: cycleLenLocked(2) = %d, want 3", n)
	}
	lm.Release(3) // ended while its own Wait had not yet returned
	for _, x := range []base.XID{1, 2, 3} {
		if err := lm.checkDeadlock(x); err != nil {
			t.Fatalf("check by %d with the stale edge 2 -> 3: %v", x, err)
		}
	}
	wantGraph(t, lm, map[base.XID]base.XID{1: 2, 3: 1})

	edge(4, 5)
	edge(5, 4)
	edge(6, 4)
	if err := lm.checkDeadlock(6); err != nil {
		t.Fatalf("check by 6, queued behind the cycle 4 -> 5 -> 4: %v", err)
	}
	if err := lm.checkDeadlock(5); !errors.Is(err, ErrDeadlock) {
		t.Fatalf("check by 5 on the cycle 4 -> 5 -> 4: %v, want ErrDeadlock", err)
	}
	if err := lm.checkDeadlock(4); err != nil {
		t.Fatalf("check by 4 after 5 was chosen: %v", err)
	}
	wantGraph(t, lm, map[base.XID]base.XID{1: 2, 3: 1, 4: 5, 6: 4})
	if s := lm.Stats(); s.Deadlocks != 1 || s.DeadlockChecks != 6 {
		t.Fatalf("Stats() = %+v, want 6 checks, 1 deadlock", s)
	}
}

// TestLockNoFalseDeadlock has 100 clients run transactions that wait for
// earlier xids only, so no cycle can form, with a deadlock timeout of 50 µs
// so that the detector runs all the time on real time: each client's first
// transaction waits for one of 10 long transactions (which never wait), the
// next ones for random earlier xids, held or not, running or waiting. No
// Wait may return anything but nil.
func TestLockNoFalseDeadlock(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 3))
	const holders, clients, txPerClient = 10, 100, 5
	lm := NewLockManager(LockManagerConfig{DeadlockTimeout: 50 * time.Microsecond})
	for x := range base.XID(holders) {
		lm.Acquire(x + 1)
		releaseAtEnd(t, lm, x+1)
	}
	var next atomic.Uint64
	next.Store(holders)
	var wg sync.WaitGroup
	errs := make(chan error, clients*txPerClient)
	for c := range clients {
		crng := rand.New(rand.NewPCG(seed, uint64(100+c)))
		wg.Go(func() {
			for k := range txPerClient {
				own := base.XID(next.Add(1))
				lm.Acquire(own)
				holder := base.XID(1 + crng.IntN(holders))
				if k > 0 {
					holder = base.XID(1 + crng.Uint64N(uint64(own-1)))
				}
				if err := lm.Wait(t.Context(), own, holder); err != nil {
					errs <- fmt.Errorf("client %d: xid %d waiting for %d: %w", c, own, holder, err)
				}
				lm.Release(own)
			}
		})
	}
	// Every client sleeps on a long transaction, and each checks once.
	deadline := time.Now().Add(20 * time.Second)
	for lm.Stats().DeadlockChecks < clients {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s, Stats() = %+v, want %d checks", lm.Stats(), clients)
		}
		time.Sleep(200 * time.Microsecond)
	}
	for _, i := range rng.Perm(holders) {
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
		lm.Release(base.XID(i + 1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := lm.Stats()
	t.Logf("Stats() = %+v", s)
	if s.Deadlocks != 0 || s.Held != 0 || s.Waiting != 0 {
		t.Fatalf("Stats() = %+v, want no deadlock and nothing held or waiting", s)
	}
	wantGraph(t, lm, map[base.XID]base.XID{})
}

// TestLockTableBounded runs 300000 transactions, at most 1000 at a time,
// and checks that the lock table's memory follows the number in progress,
// not the number run.
func TestLockTableBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const window, total = 1000, 300_000
	lm := NewLockManager(LockManagerConfig{})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	run := func(from, to base.XID) {
		for x := from; x < to; x++ {
			lm.Acquire(x)
			if x > window {
				lm.Release(x - window)
			}
		}
	}
	run(1, 10*window) // the table reaches its size
	before := heap()
	run(10*window, total)
	after := heap()
	if s := lm.Stats(); s.Held != window {
		t.Fatalf("Stats().Held = %d, want %d", s.Held, window)
	}
	if after > before+1<<20 {
		t.Fatalf("heap grew from %d to %d bytes over %d transactions", before, after, total)
	}
	for x := base.XID(total - window); x < total; x++ {
		lm.Release(x)
	}
	if s := lm.Stats(); s.Held != 0 {
		t.Fatalf("Stats().Held = %d after releasing all, want 0", s.Held)
	}
}

func BenchmarkLockAcquireRelease(b *testing.B) {
	lm := NewLockManager(LockManagerConfig{})
	x := base.XID(1)
	b.ReportAllocs()
	for b.Loop() {
		lm.Acquire(x)
		lm.Release(x)
		x++
	}
}

func BenchmarkLockAcquireReleaseParallel(b *testing.B) {
	lm := NewLockManager(LockManagerConfig{})
	var goroutines atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		// Goroutines run through xids in step; start them in different
		// partitions, as unrelated transactions mostly are.
		g := goroutines.Add(1)
		x := base.XID(g<<40 + 7*g)
		for pb.Next() {
			lm.Acquire(x)
			lm.Release(x)
			x++
		}
	})
}

func BenchmarkLockWaitUnheld(b *testing.B) {
	lm := NewLockManager(LockManagerConfig{})
	lm.Acquire(1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := lm.Wait(ctx, 1, 2); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDeadlockThroughSubtransaction: A waits for B's subtransaction while B
// waits for A; the detector must see through the subtransaction.
func TestDeadlockThroughSubtransaction(t *testing.T) {
	lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Millisecond})
	const a, b, bSub = 10, 20, 21
	lm.Acquire(a)
	lm.Acquire(b)
	lm.AcquireSub(bSub, b)
	errs := make(chan error, 2)
	go func() { errs <- lm.Wait(context.Background(), a, bSub) }()
	go func() { errs <- lm.Wait(context.Background(), b, a) }()
	err := <-errs
	if !errors.Is(err, ErrDeadlock) {
		t.Fatalf("first result %v, want ErrDeadlock", err)
	}
	// Abort the victim: whichever it was, release its locks. If A still
	// waits (for B, through B's subtransaction), B was the victim.
	if g := lm.WaitsFor(); g[a] == b {
		lm.Release(b)
		lm.Release(bSub)
	} else {
		lm.Release(a)
	}
	if err := <-errs; err != nil {
		t.Fatalf("survivor: %v", err)
	}
	if lm.Held(bSub) && !lm.Held(b) {
		t.Fatal("subtransaction lock outlived its transaction")
	}
}

// TestLockTimeout: with LockTimeout set, a wait that lasts that long fails
// with ErrLockTimeout, exactly then, and is counted; a holder that ends
// first, an earlier context deadline, or a holder not held, each win.
func TestLockTimeout(t *testing.T) {
	cases := []struct {
		name             string
		lockTimeout      time.Duration
		ctxTimeout       time.Duration // 0: none
		releaseAfter     time.Duration // 0: never
		holderNotHeld    bool
		want             error // nil, ErrLockTimeout, context.DeadlineExceeded
		wantAfter        time.Duration
		wantChecks       uint64
		wantLockTimeouts uint64
	}{
		{name: "timeout after the deadlock check", lockTimeout: 2 * time.Second,
			want: ErrLockTimeout, wantAfter: 2 * time.Second, wantChecks: 1, wantLockTimeouts: 1},
		{name: "timeout before the deadlock check", lockTimeout: 500 * time.Millisecond,
			want: ErrLockTimeout, wantAfter: 500 * time.Millisecond, wantLockTimeouts: 1},
		{name: "context deadline first", lockTimeout: 5 * time.Second, ctxTimeout: 1500 * time.Millisecond,
			want: context.DeadlineExceeded, wantAfter: 1500 * time.Millisecond, wantChecks: 1},
		{name: "holder ends first", lockTimeout: 2 * time.Second, releaseAfter: 1500 * time.Millisecond,
			wantAfter: 1500 * time.Millisecond, wantChecks: 1},
		{name: "holder not held", lockTimeout: time.Second, holderNotHeld: true},
		{name: "no lock timeout", releaseAfter: time.Hour, wantAfter: time.Hour, wantChecks: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second, LockTimeout: tc.lockTimeout})
				const holder, waiter = 7, 8
				lm.Acquire(waiter)
				if !tc.holderNotHeld {
					lm.Acquire(holder)
				}
				releaseAtEnd(t, lm, holder, waiter)
				if tc.releaseAfter > 0 {
					go func() { time.Sleep(tc.releaseAfter); lm.Release(holder) }()
				}
				ctx := t.Context()
				if tc.ctxTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
					defer cancel()
				}
				start := time.Now()
				err := lm.Wait(ctx, waiter, holder)
				if d := time.Since(start); d != tc.wantAfter {
					t.Errorf("Wait returned after %v, want %v", d, tc.wantAfter)
				}
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("Wait = %v, want %v", err, tc.want)
				}
				if errors.Is(err, ErrLockTimeout) && !strings.Contains(err.Error(), "lock timeout") {
					t.Errorf("lock timeout error %q does not say so", err)
				}
				wantGraph(t, lm, map[base.XID]base.XID{})
				s := lm.Stats()
				if s.DeadlockChecks != tc.wantChecks || s.LockTimeouts != tc.wantLockTimeouts || s.Waiting != 0 {
					t.Fatalf("Stats() = %+v, want %d checks, %d lock timeouts, nobody waiting", s, tc.wantChecks, tc.wantLockTimeouts)
				}
			})
		})
	}
}

// TestLockTimeoutLeavesDeadlockToDetector: a lock timeout longer than the
// deadlock timeout does not hide a deadlock: the first member of the cycle
// to check after it closed is its victim at its deadlock timeout, and the
// other, whose holder the victim does not release here, times out.
func TestLockTimeoutLeavesDeadlockToDetector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second, LockTimeout: 3 * time.Second})
		lm.Acquire(1)
		lm.Acquire(2)
		releaseAtEnd(t, lm, 1, 2)
		start := time.Now()
		results := make(chan waitResult, 2)
		goWait(t.Context(), lm, 0, 1, 2, results)
		time.Sleep(100 * time.Millisecond)
		goWait(t.Context(), lm, 1, 2, 1, results) // closes the cycle
		r := recvResult(t, results)
		if r.i != 0 || !errors.Is(r.err, ErrDeadlock) || time.Since(start) != time.Second {
			t.Fatalf("first result after %v: waiter %d, %v; want waiter 0 ErrDeadlock after 1s", time.Since(start), r.i, r.err)
		}
		r = recvResult(t, results)
		if r.i != 1 || !errors.Is(r.err, ErrLockTimeout) || time.Since(start) != 3100*time.Millisecond {
			t.Fatalf("second result after %v: waiter %d, %v; want waiter 1 ErrLockTimeout after 3.1s", time.Since(start), r.i, r.err)
		}
		if s := lm.Stats(); s.Deadlocks != 1 || s.LockTimeouts != 1 {
			t.Fatalf("Stats() = %+v, want one deadlock, one lock timeout", s)
		}
	})
}

// TestHaltReleasesLockWaiters: Halt.Stop, called from another goroutine,
// wakes every waiter at once, whether it has run its deadlock check or
// not, with an error wrapping the Halt's; later waits return it without
// sleeping, for held and unheld holders alike.
func TestHaltReleasesLockWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := base.NewHalt()
		lm := NewLockManager(LockManagerConfig{DeadlockTimeout: time.Second, Halt: h})
		for x := range base.XID(6) {
			lm.Acquire(x + 1)
		}
		releaseAtEnd(t, lm, 1, 2, 3, 4, 5, 6)
		results := make(chan waitResult, 4)
		goWait(t.Context(), lm, 0, 2, 1, results)
		goWait(t.Context(), lm, 1, 3, 1, results)
		time.Sleep(2 * time.Second) // these two have checked for deadlock
		goWait(t.Context(), lm, 2, 4, 2, results)
		goWait(t.Context(), lm, 3, 5, 1, results)
		synctest.Wait()
		noResult(t, results)
		cause := errors.New("fsync of a data file failed")
		go h.Stop(cause)
		for range 4 {
			r := recvResult(t, results)
			if !errors.Is(r.err, base.ErrStopped) || !errors.Is(r.err, cause) {
				t.Fatalf("waiter %d released with %v, want ErrStopped wrapping the cause", r.i, r.err)
			}
		}
		wantGraph(t, lm, map[base.XID]base.XID{})
		if s := lm.Stats(); s.Waiting != 0 || s.Deadlocks != 0 {
			t.Fatalf("Stats() = %+v, want nobody waiting, no deadlock", s)
		}
		start := time.Now()
		waits := lm.Stats().Waits
		for _, holder := range []base.XID{1, 99} { // held; never held
			if err := lm.Wait(t.Context(), 6, holder); !errors.Is(err, base.ErrStopped) {
				t.Fatalf("Wait for xid %d after the halt = %v, want ErrStopped", holder, err)
			}
		}
		if time.Since(start) != 0 || lm.Stats().Waits != waits {
			t.Fatal("a Wait after the halt slept")
		}
	})
}
