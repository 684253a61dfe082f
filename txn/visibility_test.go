package txn

import (
	"testing"

	"github.com/heapkv/heapkv/internal/base"
)

// fakeStatus is a commit log in a map; xids absent from it are in progress.
type fakeStatus struct {
	st      map[base.XID]Status
	durable map[base.XID]bool
}

func (f fakeStatus) Status(x base.XID) (Status, error) { return f.st[x], nil }
func (f fakeStatus) IsDurable(x base.XID) bool         { return f.durable[x] }

// The cast of the table: the reader is xid 20 with snapshot
// xmin 10, xmax 30, running {10, 15, 25} (and itself), subtransaction 21.
const (
	me         base.XID = 20
	mySub      base.XID = 21
	myAbortSub base.XID = 22 // a rolled-back savepoint of ours
	oldCommit  base.XID = 5  // committed long before the snapshot
	oldAbort   base.XID = 6  // aborted
	crashed    base.XID = 7  // in progress in the CLOG, not running: crashed
	running    base.XID = 15 // running at snapshot time, still running
	lateCommit base.XID = 25 // running at snapshot time, committed since
	future     base.XID = 35 // began after the snapshot, committed
	asyncCom   base.XID = 12 // committed before the snapshot, commit not yet durable
)

func testWorld() (*Snapshot, fakeStatus) {
	s := &Snapshot{XMin: 10, XMax: 30, XIP: []base.XID{10, running, me, lateCommit}, Cur: me, Subs: []base.XID{mySub}}
	f := fakeStatus{
		st: map[base.XID]Status{
			oldCommit: Committed, oldAbort: Aborted, lateCommit: Committed, future: Committed,
			asyncCom: Committed, myAbortSub: Aborted,
		},
		durable: map[base.XID]bool{oldCommit: true, lateCommit: true, future: true},
	}
	return s, f
}

func TestVisible(t *testing.T) {
	tests := []struct {
		name  string
		v     Version
		want  bool
		hints Infomask
	}{
		// Inserted by ...
		{"own insert", Version{XMin: me}, true, 0},
		{"own subtransaction's insert", Version{XMin: mySub}, true, 0},
		{"insert of own rolled-back savepoint", Version{XMin: myAbortSub}, false, XMinInvalid},
		{"own insert, own delete", Version{XMin: me, XMax: me}, false, 0},
		{"own insert, deleted in own subtransaction", Version{XMin: me, XMax: mySub}, false, 0},
		{"own insert, delete rolled back with savepoint", Version{XMin: me, XMax: myAbortSub}, true, 0},
		{"own insert, own row lock", Version{XMin: me, XMax: me, Mask: XMaxLockOnly}, true, 0},
		{"committed before snapshot", Version{XMin: oldCommit}, true, XMinCommitted},
		{"committed before snapshot, hinted", Version{XMin: oldCommit, Mask: XMinCommitted}, true, 0},
		{"committed before snapshot, commit not durable: no hint", Version{XMin: asyncCom}, true, 0},
		{"aborted", Version{XMin: oldAbort}, false, XMinInvalid},
		{"aborted, hinted", Version{XMin: oldAbort, Mask: XMinInvalid}, false, 0},
		{"crashed inserter", Version{XMin: crashed}, false, 0},
		{"in progress", Version{XMin: running}, false, 0},
		{"committed after snapshot (was running)", Version{XMin: lateCommit}, false, 0},
		{"committed after snapshot, hinted", Version{XMin: lateCommit, Mask: XMinCommitted}, false, 0},
		{"began after snapshot", Version{XMin: future}, false, 0},
		{"frozen", Version{XMin: FrozenXID}, true, 0},
		// ... and deleted by
		{"deleted before snapshot", Version{XMin: oldCommit, XMax: 9}, false, XMinCommitted | XMaxCommitted},
		{"deleted before snapshot, xmin hinted", Version{XMin: oldCommit, XMax: 8, Mask: XMinCommitted}, false, XMaxCommitted},
		{"deleted by aborted", Version{XMin: oldCommit, XMax: oldAbort, Mask: XMinCommitted}, true, XMaxInvalid},
		{"deleted by in-progress", Version{XMin: oldCommit, XMax: running, Mask: XMinCommitted}, true, 0},
		{"deleted by crashed", Version{XMin: oldCommit, XMax: crashed, Mask: XMinCommitted}, true, 0},
		{"deleted by commit after snapshot", Version{XMin: oldCommit, XMax: lateCommit, Mask: XMinCommitted}, true, 0},
		{"deleted after snapshot, hinted", Version{XMin: oldCommit, XMax: future, Mask: XMinCommitted | XMaxCommitted}, true, 0},
		{"deleted by us", Version{XMin: oldCommit, XMax: me, Mask: XMinCommitted}, false, 0},
		{"locked by in-progress", Version{XMin: oldCommit, XMax: running, Mask: XMinCommitted | XMaxLockOnly}, true, 0},
		{"locked by committed", Version{XMin: oldCommit, XMax: oldCommit, Mask: XMinCommitted | XMaxLockOnly}, true, 0},
		{"xmax known aborted", Version{XMin: oldCommit, XMax: running, Mask: XMinCommitted | XMaxInvalid}, true, 0},
		{"deleted by committed, hinted", Version{XMin: oldCommit, XMax: oldCommit, Mask: XMinCommitted | XMaxCommitted}, false, 0},
		{"deleted by non-durable commit: no hint", Version{XMin: oldCommit, XMax: asyncCom, Mask: XMinCommitted}, false, 0},
	}
	s, f := testWorld()
	f.st[8] = Committed
	f.durable[8] = true
	f.st[9] = Committed
	f.durable[9] = true
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, hints, err := Visible(tt.v, s, f)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || hints != tt.hints {
				t.Fatalf("Visible = %v hints %05b, want %v hints %05b", got, hints, tt.want, tt.hints)
			}
		})
	}
}

func TestCheckWrite(t *testing.T) {
	tests := []struct {
		name string
		v    Version
		want WriteCheck
		wait base.XID
	}{
		{"committed row", Version{XMin: oldCommit, Mask: XMinCommitted}, WriteOK, 0},
		{"own row", Version{XMin: me}, WriteOK, 0},
		{"aborted insert", Version{XMin: oldAbort}, WriteOK, 0},
		{"insert in progress", Version{XMin: running}, WriteWait, running},
		{"inserted after snapshot", Version{XMin: lateCommit}, WriteConflict, lateCommit},
		{"delete in progress", Version{XMin: oldCommit, XMax: running, Mask: XMinCommitted}, WriteWait, running},
		{"row lock in progress", Version{XMin: oldCommit, XMax: running, Mask: XMinCommitted | XMaxLockOnly}, WriteWait, running},
		{"deleted after snapshot", Version{XMin: oldCommit, XMax: lateCommit, Mask: XMinCommitted}, WriteConflict, lateCommit},
		{"deleted after snapshot, hinted", Version{XMin: oldCommit, XMax: lateCommit, Mask: XMinCommitted | XMaxCommitted}, WriteConflict, lateCommit},
		{"deleted before snapshot", Version{XMin: oldCommit, XMax: oldCommit, Mask: XMinCommitted | XMaxCommitted}, WriteOK, 0},
		{"lock by committed", Version{XMin: oldCommit, XMax: lateCommit, Mask: XMinCommitted | XMaxLockOnly}, WriteOK, 0},
		{"delete aborted", Version{XMin: oldCommit, XMax: oldAbort, Mask: XMinCommitted}, WriteOK, 0},
		{"own delete", Version{XMin: oldCommit, XMax: me, Mask: XMinCommitted}, WriteOK, 0},
	}
	s, f := testWorld()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckWrite(tt.v, s, f)
			if err != nil {
				t.Fatal(err)
			}
			if got.Check != tt.want || got.Holder != tt.wait {
				t.Fatalf("CheckWrite = %v (wait %d), want %v (wait %d)", got.Check, got.Holder, tt.want, tt.wait)
			}
		})
	}
}
