package txn

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
)

func testSeed(t testing.TB) uint64 { return uint64(testutil.Seed(t)) }

// TestVisibleAgainstNaiveModel replays random histories of transactions on
// a real ProcArray, takes snapshots at random moments, and checks Visible
// for random versions against the definition: a version is visible if its
// inserter is the reader or committed before the snapshot, and no deleter
// that is the reader or committed before the snapshot removed it. Hint bits
// are set at random wherever they would be true now.
func TestVisibleAgainstNaiveModel(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	for round := range 300 {
		pa := NewProcArray(FirstNormalXID - 1)
		next := FirstNormalXID
		type txState struct {
			proc      *Proc
			status    Status // now
			committed bool   // committed at the time of the snapshot
			seq       int    // order of its commit
		}
		commits := 0
		txs := map[base.XID]*txState{}
		var live []base.XID
		status := fakeStatus{st: map[base.XID]Status{}, durable: map[base.XID]bool{}}

		step := func() {
			if len(live) == 0 || r.IntN(2) == 0 {
				p := pa.Join()
				pa.BeginAssign(p)
				x := next
				next++
				pa.SetXID(p, x)
				txs[x] = &txState{proc: p}
				live = append(live, x)
				return
			}
			i := r.IntN(len(live))
			x := live[i]
			live = append(live[:i], live[i+1:]...)
			st := Committed
			if r.IntN(3) == 0 {
				st = Aborted
			}
			status.st[x] = st
			status.durable[x] = true
			txs[x].status = st
			commits++
			txs[x].seq = commits
			pa.EndXID(txs[x].proc, x)
			pa.Leave(txs[x].proc)
		}
		for range 5 + r.IntN(30) {
			step()
		}
		if len(live) == 0 {
			step()
		}
		reader := live[r.IntN(len(live))]
		var snap Snapshot
		pa.TakeSnapshot(&snap, txs[reader].proc)
		snap.Cur = reader
		for x, tx := range txs {
			tx.committed = tx.status == Committed
			_ = x
		}
		// History goes on after the snapshot.
		for range r.IntN(20) {
			step()
		}
		if _, ok := status.st[reader]; ok {
			continue // the reader itself ended; its snapshot is moot
		}

		xids := make([]base.XID, 0, len(txs))
		for x := range txs {
			xids = append(xids, x)
		}
		pick := func() base.XID { return xids[r.IntN(len(xids))] }
		sees := func(x base.XID) bool { return x == reader || txs[x].committed }
		for range 50 {
			v := Version{XMin: pick()}
			if r.IntN(2) == 0 {
				// Only a transaction that could have seen the insert
				// deletes it: the inserter itself, or one that ends
				// after the inserter committed.
				v.XMax = v.XMin
				if x := pick(); txs[v.XMin].status == Committed && (txs[x].status != Committed || txs[x].seq > txs[v.XMin].seq) {
					v.XMax = x
				}
				if r.IntN(4) == 0 {
					v.Mask |= XMaxLockOnly
				}
			}
			// Random hints, only where true now.
			if s := txs[v.XMin].status; s == Committed && r.IntN(2) == 0 {
				v.Mask |= XMinCommitted
			} else if s == Aborted && r.IntN(2) == 0 {
				v.Mask |= XMinInvalid
			}
			if v.XMax != 0 {
				if s := txs[v.XMax].status; s == Committed && r.IntN(2) == 0 {
					v.Mask |= XMaxCommitted
				} else if s == Aborted && r.IntN(2) == 0 {
					v.Mask |= XMaxInvalid
				}
			}
			want := sees(v.XMin) && !(v.XMax != 0 && v.Mask&XMaxLockOnly == 0 && sees(v.XMax))
			got, _, err := Visible(v, &snap, status)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("round %d: reader %d snapshot %+v: Visible(%+v) = %v, want %v (now: xmin %v, xmax %v)",
					round, reader, snap, v, got, want, txs[v.XMin].status, status.st[v.XMax])
			}
		}
	}
}

// TestSnapshotSeesCommitsInOrder: with writers committing concurrently, a
// snapshot that sees a commit also sees every commit that was acknowledged
// before that one began.
func TestSnapshotSeesCommitsInOrder(t *testing.T) {
	const writers, perWriter, snapshots = 4, 3000, 300
	pa := NewProcArray(FirstNormalXID - 1)
	var next, clock atomic.Uint64
	next.Store(uint64(FirstNormalXID))
	type span struct{ begin, end uint64 } // of the commit, on clock
	spans := make([]span, writers*perWriter+int(FirstNormalXID))
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range perWriter {
				p := pa.Join()
				pa.BeginAssign(p)
				x := base.XID(next.Add(1) - 1)
				pa.SetXID(p, x)
				begin := clock.Add(1)
				pa.EndXID(p, x)
				spans[x] = span{begin: begin, end: clock.Add(1)}
				pa.Leave(p)
			}
		})
	}
	var snaps []Snapshot
	for range snapshots {
		var s Snapshot
		pa.TakeSnapshot(&s, nil)
		snaps = append(snaps, s)
	}
	wg.Wait()
	for _, s := range snaps {
		var latestBegin uint64 // the latest-starting commit the snapshot sees
		for x := FirstNormalXID; int(x) < len(spans); x++ {
			if !s.InProgressAt(x) {
				latestBegin = max(latestBegin, spans[x].begin)
			}
		}
		for x := FirstNormalXID; int(x) < len(spans); x++ {
			if sp := spans[x]; sp.end < latestBegin && s.InProgressAt(x) {
				t.Fatalf("snapshot (xmax %d) sees a commit that began at %d but not xid %d, acknowledged at %d", s.XMax, latestBegin, x, sp.end)
			}
		}
	}
}

func TestHorizon(t *testing.T) {
	pa := NewProcArray(9)
	a := pa.Join()
	pa.BeginAssign(a)
	pa.SetXID(a, 10)
	b := pa.Join() // read-only, with a snapshot
	var s Snapshot
	pa.TakeSnapshot(&s, b)
	if s.XMin != 10 || s.XMax != 10 {
		t.Fatalf("snapshot %+v", s)
	}
	if h := pa.Horizon(); h != 10 {
		t.Fatalf("horizon %d, want 10", h)
	}
	pa.EndXID(a, 10)
	pa.Leave(a)
	if h := pa.Horizon(); h != 10 {
		t.Fatalf("horizon %d with b's snapshot still held, want 10", h)
	}
	pa.Leave(b)
	if h := pa.Horizon(); h != 11 {
		t.Fatalf("horizon %d with nothing running, want 11", h)
	}
	if n := pa.Active(); n != 0 {
		t.Fatalf("%d procs active", n)
	}
}

func BenchmarkSnapshot(b *testing.B) {
	for _, active := range []int{1, 16, 128} {
		b.Run(map[int]string{1: "active=1", 16: "active=16", 128: "active=128"}[active], func(b *testing.B) {
			pa := NewProcArray(FirstNormalXID - 1)
			for i := range active {
				p := pa.Join()
				pa.SetXID(p, FirstNormalXID+base.XID(i))
			}
			var s Snapshot
			b.ReportAllocs()
			for b.Loop() {
				pa.TakeSnapshot(&s, nil)
			}
		})
	}
}
