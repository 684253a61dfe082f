package heap

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/txn"
)

// TestConcurrentReadWrite runs writers (updates, deletes, re-inserts, some
// aborted, some TOASTed), readers with ProcArray snapshots (which set hint
// bits, and log hint images after checkpoints), a pruner and a
// checkpointer at once on a small pool. Every read is compared with a
// model: the key's committed history, of which a snapshot must see the last
// write that it does not count as running.
func TestConcurrentReadWrite(t *testing.T) {
	seed := testSeed(t)
	e := openEnv(t, vfs.NewMemFS(), envConfig{poolPages: 24})
	defer e.mustClose(t)
	pa := txn.NewProcArray(txn.FirstNormalXID - 1)
	const nkeys = 16
	type write struct {
		xid     base.XID
		value   []byte
		deleted bool
	}
	type keyState struct {
		mu      sync.Mutex // serialises writers of the key; guards history
		history []write    // committed writes, in commit order
		newest  atomic.Pointer[base.TID]
	}
	keys := make([]keyState, nkeys)
	for i := range keys {
		tid := base.InvalidTID
		keys[i].newest.Store(&tid)
	}
	keyName := func(i int) []byte { return []byte(fmt.Sprintf("key-%02d", i)) }

	var (
		wg     sync.WaitGroup
		stop   atomic.Bool
		errs   = make(chan error, 16)
		reads  atomic.Int64
		writes atomic.Int64
	)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
		stop.Store(true)
	}

	writer := func(w int) {
		rng := newRand(seed*7 + int64(w))
		for n := 0; n < 300 && !stop.Load(); n++ {
			k := rng.IntN(nkeys)
			ks := &keys[k]
			key := keyName(k)
			ks.mu.Lock()
			p := pa.Join()
			pa.BeginAssign(p)
			xid := e.clog.newXID()
			pa.SetXID(p, xid)
			var snap txn.Snapshot
			pa.TakeSnapshot(&snap, p)
			snap.Cur = xid

			err := func() error {
				nf, ok, err := e.h.Newest(*ks.newest.Load(), key)
				if err != nil {
					return err
				}
				v, vt := nf.Version, nf.TID
				present := ok && (v.XMax == base.InvalidXID || v.Mask&txn.XMaxLockOnly != 0 || isAborted(e.clog, v.XMax))
				if ok {
					if wv, err := txn.CheckWrite(v, &snap, e.clog); err != nil || wv.Check != txn.WriteOK {
						return fmt.Errorf("CheckWrite of %q = %v, %v", key, wv.Check, err)
					}
				}
				var value []byte
				deleted := present && rng.IntN(5) == 0
				if present {
					if err := e.h.SetXmax(vt, key, v, xid, XmaxDelete); err != nil {
						return err
					}
				}
				if !deleted {
					value = randBytes(rng, rng.IntN(300))
					if rng.IntN(15) == 0 {
						value = randBytes(rng, 5000+rng.IntN(20000))
					}
					prev := base.InvalidTID
					if ok {
						prev = vt
					}
					tid, err := e.h.Insert(xid, key, value, prev)
					if err != nil {
						return err
					}
					ks.newest.Store(&tid)
				}
				if rng.IntN(6) == 0 {
					e.clog.set(xid, txn.Aborted, true)
				} else {
					e.clog.set(xid, txn.Committed, rng.IntN(3) > 0)
					ks.history = append(ks.history, write{xid, value, deleted})
				}
				return nil
			}()
			pa.EndXID(p, xid)
			pa.Leave(p)
			ks.mu.Unlock()
			if err != nil {
				fail(fmt.Errorf("writer %d: %w", w, err))
				return
			}
			writes.Add(1)
			if rng.IntN(10) == 0 {
				e.clog.setDurable(xid)
			}
		}
	}
	reader := func(r int) {
		rng := newRand(seed*13 + int64(r))
		var snap txn.Snapshot
		for !stop.Load() {
			k := rng.IntN(nkeys)
			ks := &keys[k]
			pa.TakeSnapshot(&snap, nil)
			f, ok, err := e.h.Get(*ks.newest.Load(), keyName(k), &snap, nil)
			if err != nil {
				fail(fmt.Errorf("reader %d: %w", r, err))
				return
			}
			got := f.Value
			ks.mu.Lock()
			var want *write
			for i := len(ks.history) - 1; i >= 0; i-- {
				if !snap.InProgressAt(ks.history[i].xid) {
					want = &ks.history[i]
					break
				}
			}
			ks.mu.Unlock()
			wantOK := want != nil && !want.deleted
			if ok != wantOK || (ok && !bytes.Equal(got, want.value)) {
				fail(fmt.Errorf("reader %d: key %d with snapshot xmin %d xmax %d xip %v: present=%v (%d bytes), want present=%v",
					r, k, snap.XMin, snap.XMax, snap.XIP, ok, len(got), wantOK))
				return
			}
			reads.Add(1)
		}
	}

	for w := range 2 {
		wg.Go(func() { writer(w) })
	}
	for r := range 2 {
		wg.Go(func() { reader(r) })
	}
	wg.Go(func() { // pruner and checkpointer
		rng := newRand(seed * 17)
		for i := 0; !stop.Load(); i++ {
			n, _ := e.h.NBlocks()
			if n > 0 {
				if _, err := e.h.Prune(base.BlockNum(rng.IntN(int(n)))); err != nil {
					fail(fmt.Errorf("pruner: %w", err))
					return
				}
			}
			if i%50 == 0 {
				if err := e.wal.Checkpoint(); err != nil {
					fail(fmt.Errorf("checkpoint: %w", err))
					return
				}
			}
		}
	})
	// Stop readers and the pruner once the writers are done.
	go func() {
		for writes.Load() < 600 && !stop.Load() {
			if len(errs) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		stop.Store(true)
	}()
	wg.Wait()
	close(errs)
	if err := errors.Join(func() []error {
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return all
	}()...); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if err := Check(e.pool, testRel); err != nil {
		t.Fatalf("seed %d: Check: %v", seed, err)
	}
	st := e.h.Stats()
	t.Logf("%d writes, %d reads; %d hints, %d hint images, %d pruned, %d prunes busy",
		writes.Load(), reads.Load(), st.HintsSet, st.HintImages, st.PrunedTuples, st.PruneBusy)
}

func isAborted(c *clog, xid base.XID) bool {
	st, _ := c.Status(xid)
	return st == txn.Aborted
}
