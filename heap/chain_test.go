package heap

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/txn"
)

// TestVersionChain runs 50 writes of one key (updates, deletes, re-inserts
// after a delete, row locks; some aborted; some commits not yet durable),
// each in a transaction of a ProcArray, and takes snapshots while each
// writer runs and after it ends. Every snapshot must see exactly the
// version that was current when it was taken: the chain walk from the
// newest TID (what the B+tree would hold) has to skip versions it does not
// see, stop at deletions, and step over aborted versions, also after they
// were pruned to stubs. Unrelated rows, some large, are written in between
// so that the chain spreads over pages and TOAST.
func TestVersionChain(t *testing.T) {
	seed := testSeed(t)
	rng := newRand(seed)
	e := openEnv(t, vfs.NewMemFS(), envConfig{poolPages: 32})
	defer e.mustClose(t)
	pa := txn.NewProcArray(txn.FirstNormalXID - 1)
	key := []byte("the-key")
	newestTID := base.InvalidTID // the test's stand-in for the B+tree entry

	type check struct {
		what    string
		snap    txn.Snapshot
		value   []byte
		present bool
	}
	var checks []check
	takeSnap := func(what string, value []byte, present bool) {
		var s txn.Snapshot
		pa.TakeSnapshot(&s, nil)
		checks = append(checks, check{what, s, value, present})
	}
	verify := func(when string) {
		t.Helper()
		for _, c := range checks {
			snap := c.snap
			f, ok, err := e.h.Get(newestTID, key, &snap, nil)
			if err != nil {
				t.Fatalf("seed %d: %s: snapshot %q: %v", seed, when, c.what, err)
			}
			got := f.Value
			if ok != c.present || !bytes.Equal(got, c.value) {
				t.Fatalf("seed %d: %s: snapshot %q (xmin %d xmax %d xip %v) sees present=%v %d bytes, want present=%v %d bytes",
					seed, when, c.what, snap.XMin, snap.XMax, snap.XIP, ok, len(got), c.present, len(c.value))
			}
		}
	}
	pruneAll := func() {
		n, err := e.h.NBlocks()
		if err != nil {
			t.Fatal(err)
		}
		for blk := range n {
			if _, err := e.h.Prune(blk); err != nil {
				t.Fatalf("seed %d: prune block %d: %v", seed, blk, err)
			}
		}
	}
	newValue := func() []byte {
		switch rng.IntN(10) {
		case 0:
			return randBytes(rng, 3000+rng.IntN(20000)) // TOAST
		case 1:
			return nil
		}
		return randBytes(rng, rng.IntN(600))
	}

	var cur []byte // the committed value
	present := false
	takeSnap("before the first write", nil, false)
	for i := range 50 {
		// Unrelated rows so the versions land on different pages.
		for range rng.IntN(8) {
			filler := e.clog.newXID()
			if _, err := e.h.Insert(filler, []byte(fmt.Sprintf("filler-%d", rng.Uint32())), newValue(), base.InvalidTID); err != nil {
				t.Fatal(err)
			}
			e.clog.set(filler, txn.Committed, true)
		}

		p := pa.Join()
		pa.BeginAssign(p)
		xid := e.clog.newXID()
		pa.SetXID(p, xid)
		var own txn.Snapshot
		pa.TakeSnapshot(&own, p)
		own.Cur = xid

		nf, ok, err := e.h.Newest(newestTID, key)
		if err != nil {
			t.Fatalf("seed %d: write %d: Newest: %v", seed, i, err)
		}
		v, vt := nf.Version, nf.TID
		if present && !ok {
			t.Fatalf("seed %d: write %d: Newest found nothing for a present key", seed, i)
		}
		if ok {
			wv, err := txn.CheckWrite(v, &own, e.clog)
			if err != nil || wv.Check != txn.WriteOK {
				t.Fatalf("seed %d: write %d: CheckWrite = %v, %v", seed, i, wv.Check, err)
			}
		}
		op := "insert"
		switch r := rng.IntN(10); {
		case present && r < 2:
			op = "delete"
		case present && r < 3:
			op = "lock"
		case present && r < 4:
			op = "lock+update"
		case present:
			op = "update"
		}
		val := newValue()
		ownPresent, ownValue := present, cur
		switch op {
		case "delete":
			mustSetXmax(t, e.h, vt, key, v, xid, XmaxDelete)
			ownPresent, ownValue = false, nil
		case "lock":
			mustSetXmax(t, e.h, vt, key, v, xid, XmaxLockOnly)
			// A second writer now finds the row locked by a running xid.
			if wv, _ := txn.CheckWrite(versionAt(t, e.h, vt), snapAll(), e.clog); wv.Check != txn.WriteWait || wv.Holder != xid {
				t.Fatalf("seed %d: write %d: row locked by %d: CheckWrite = %v %d", seed, i, xid, wv.Check, wv.Holder)
			}
			// And SetXmax against the stale xmax fails.
			if err := e.h.SetXmax(vt, key, v, xid+1000, XmaxDelete); !errors.Is(err, ErrXmaxChanged) {
				t.Fatalf("seed %d: write %d: SetXmax with a stale xmax: %v", seed, i, err)
			}
		case "lock+update", "update":
			if op == "lock+update" {
				mustSetXmax(t, e.h, vt, key, v, xid, XmaxLockOnly)
				v.XMax, v.Mask = xid, v.Mask&^txn.XMaxCommitted&^txn.XMaxInvalid|txn.XMaxLockOnly
			}
			mustSetXmax(t, e.h, vt, key, v, xid, XmaxDelete)
			fallthrough
		case "insert":
			prev := base.InvalidTID
			if ok {
				prev = vt
			}
			tid, err := e.h.Insert(xid, key, val, prev)
			if err != nil {
				t.Fatalf("seed %d: write %d: Insert: %v", seed, i, err)
			}
			newestTID = tid
			ownPresent, ownValue = true, val
		}
		takeSnap(fmt.Sprintf("while write %d (%s) runs", i, op), cur, present)
		gf, gotOK, err := e.h.Get(newestTID, key, &own, nil)
		if err != nil || gotOK != ownPresent || !bytes.Equal(gf.Value, ownValue) {
			t.Fatalf("seed %d: write %d (%s): the writer sees present=%v (%v), want %v", seed, i, op, gotOK, err, ownPresent)
		}

		if rng.IntN(6) == 0 {
			e.clog.set(xid, txn.Aborted, true)
			op += " (aborted)"
		} else {
			e.clog.set(xid, txn.Committed, rng.IntN(3) > 0)
			cur, present = ownValue, ownPresent
		}
		pa.EndXID(p, xid)
		pa.Leave(p)
		takeSnap(fmt.Sprintf("after write %d (%s)", i, op), cur, present)

		if rng.IntN(5) == 0 {
			pruneAll()
		}
		if rng.IntN(4) == 0 {
			verify(fmt.Sprintf("after write %d", i))
		}
	}
	verify("at the end")
	pruneAll()
	verify("after pruning")
	// Make every commit durable: hints get set, answers stay.
	for x := txn.FirstNormalXID; x < e.clog.next; x++ {
		e.clog.setDurable(x)
	}
	verify("with durable commits")
	verify("with hint bits set")
	if err := Check(e.pool, testRel); err != nil {
		t.Fatalf("seed %d: Check: %v", seed, err)
	}
	st := e.h.Stats()
	t.Logf("%d snapshots checked; stats %+v", len(checks), st)
}

func mustSetXmax(t *testing.T, h *Heap, tid base.TID, key []byte, expect txn.Version, xid base.XID, mode XmaxMode) {
	t.Helper()
	if err := h.SetXmax(tid, key, expect, xid, mode); err != nil {
		t.Fatalf("SetXmax(%v, expect %v, xid %d, mode %v): %v", tid, expect, xid, mode, err)
	}
}

func versionAt(t *testing.T, h *Heap, tid base.TID) txn.Version {
	t.Helper()
	tup, err := h.Fetch(tid)
	if err != nil {
		t.Fatal(err)
	}
	return txn.Version{XMin: tup.XMin, XMax: tup.XMax, Mask: tup.Mask}
}

// TestSetXmaxExpectsLockOnlyBit: a row locked by xid and then updated by
// the same xid keeps xmax = xid, so a writer that judged the lock (which
// is "gone" once its holder commits) must fail its SetXmax instead of
// taking the row back from under the update (a lost update that
// kv's GetForUpdate counter test met once in a few hundred -race runs).
func TestSetXmaxExpectsLockOnlyBit(t *testing.T) {
	e := openEnv(t, vfs.NewMemFS(), envConfig{})
	defer e.mustClose(t)
	c := e.clog
	key := []byte("k")
	ins := c.newXID()
	tid, err := e.h.Insert(ins, key, []byte("v0"), base.InvalidTID)
	if err != nil {
		t.Fatal(err)
	}
	c.set(ins, txn.Committed, true)
	locker := c.newXID()
	mustSetXmax(t, e.h, tid, key, txn.Version{}, locker, XmaxLockOnly)
	judged := txn.Version{XMin: ins, XMax: locker, Mask: txn.XMaxLockOnly} // what a second writer read
	mustSetXmax(t, e.h, tid, key, judged, locker, XmaxDelete)              // the locker updates
	c.set(locker, txn.Committed, true)
	if err := e.h.SetXmax(tid, key, judged, c.newXID(), XmaxLockOnly); !errors.Is(err, ErrXmaxChanged) {
		t.Fatalf("SetXmax with a stale lock-only expectation: %v, want ErrXmaxChanged", err)
	}
}
