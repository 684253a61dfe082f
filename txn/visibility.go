package txn

import (
	"slices"

	"github.com/heapkv/heapkv/internal/base"
)

// Snapshot says which transactions' effects a reader sees: those that
// committed before it was taken. Concretely an xid is "in the snapshot"
// (still running as far as the reader knows, so its effects are invisible)
// when it is at or above XMax, or listed in XIP. Everything below XMin
// finished before the snapshot.
//
// Cur and Subs name the reader's own transaction (top xid and the live
// subtransaction xids): its own changes are visible to it.
type Snapshot struct {
	XMin base.XID   // every xid below it had finished
	XMax base.XID   // every xid at or above it had not started
	XIP  []base.XID // in progress at the time, XMin <= xid < XMax; sorted
	Cur  base.XID   // the reader's own top-level xid, or InvalidXID
	Subs []base.XID // the reader's live subtransaction xids; sorted
}

// InProgressAt reports whether xid was running (or not yet started) when
// the snapshot was taken, so its effects must not be seen.
func (s *Snapshot) InProgressAt(xid base.XID) bool {
	if xid >= s.XMax {
		return true
	}
	if xid < s.XMin {
		return false
	}
	_, found := slices.BinarySearch(s.XIP, xid)
	return found
}

// IsOwn reports whether xid is the reader's own transaction or one of its
// live subtransactions.
func (s *Snapshot) IsOwn(xid base.XID) bool {
	if xid == base.InvalidXID {
		return false
	}
	if xid == s.Cur {
		return true
	}
	_, found := slices.BinarySearch(s.Subs, xid)
	return found
}

// Infomask bits of a tuple version that visibility reads and sets. The heap
// stores them in its tuple header; they are defined here because this is
// where their meaning lives.
type Infomask uint16

const (
	XMinCommitted Infomask = 1 << iota // hint: xmin is known committed
	XMinInvalid                        // hint: xmin is known aborted
	XMaxCommitted                      // hint: xmax is known committed
	XMaxInvalid                        // hint: xmax is known aborted (or absent)
	XMaxLockOnly                       // xmax only locked the row; it did not delete it
)

// Version is what visibility needs of one tuple version.
type Version struct {
	XMin, XMax base.XID
	Mask       Infomask
}

// StatusSource answers the two questions visibility asks about a finished
// transaction: how it ended, and whether its commit record is durable yet
// (only then may a hint bit say so, since a crash could otherwise leave a
// page that claims a commit the WAL lost).
type StatusSource interface {
	Status(xid base.XID) (Status, error)
	IsDurable(xid base.XID) bool
}

// Visible decides whether snapshot s sees version v. It returns the hint
// bits that may now be set on the version (the caller ORs them into the
// tuple's infomask, under at least a share lock on its page); they are only
// ever bits about transactions whose outcome is final and, for commits,
// durable. This is PostgreSQL's HeapTupleSatisfiesMVCC with 64-bit xids.
func Visible(v Version, s *Snapshot, src StatusSource) (visible bool, hints Infomask, err error) {
	j, err := Judge(v, s, src)
	return j.Visible(), j.Hints, err
}

// Judgement is Judge's verdict on one version for one snapshot.
type Judgement struct {
	// Inserted: the snapshot sees the insert of the version.
	Inserted bool
	// Deleted: the snapshot also sees a deletion of it (a lock-only xmax
	// never deletes).
	Deleted bool
	// Hints are the hint bits that may now be set on the version, as
	// Visible returns them.
	Hints Infomask
}

// Visible reports whether the snapshot sees the version: inserted and not
// deleted.
func (j Judgement) Visible() bool { return j.Inserted && !j.Deleted }

// Judge splits Visible's answer in two, which a walk down a version chain
// needs: Inserted says s sees the insert of v; Deleted says s also sees a
// deletion of it. A reader that finds Inserted && Deleted stops (the row was
// gone at its snapshot); one that finds !Inserted moves on to the older
// version. The Judgement is returned by value: Judge runs once per version
// read and allocates nothing.
func Judge(v Version, s *Snapshot, src StatusSource) (Judgement, error) {
	var hints Infomask
	// Was the inserting transaction committed, as far as s is concerned?
	switch {
	case v.Mask&XMinInvalid != 0:
		return Judgement{}, nil
	case v.XMin == FrozenXID:
		// Committed for everyone.
	case v.Mask&XMinCommitted != 0:
		if s.InProgressAt(v.XMin) {
			return Judgement{}, nil
		}
	case s.IsOwn(v.XMin):
		// Inserted by us: visible unless we deleted it ourselves (a delete
		// by a rolled-back subtransaction of ours does not count).
		if v.XMax == base.InvalidXID || v.Mask&(XMaxInvalid|XMaxLockOnly) != 0 {
			return Judgement{Inserted: true}, nil
		}
		return Judgement{Inserted: true, Deleted: s.IsOwn(v.XMax)}, nil
	case s.InProgressAt(v.XMin):
		return Judgement{}, nil
	default:
		st, err := src.Status(v.XMin)
		if err != nil {
			return Judgement{}, err
		}
		switch st {
		case Committed:
			if src.IsDurable(v.XMin) {
				hints |= XMinCommitted
			}
		case Aborted:
			return Judgement{Hints: XMinInvalid}, nil
		default:
			// Not running at snapshot time yet not committed: it crashed
			// (recovery marks such xids aborted) or is a subtransaction
			// of a transaction still running. Either way, unseen.
			return Judgement{}, nil
		}
	}

	// The insert is seen. Did a deletion we can see follow it?
	if v.XMax == base.InvalidXID || v.Mask&(XMaxInvalid|XMaxLockOnly) != 0 {
		return Judgement{Inserted: true, Hints: hints}, nil
	}
	if v.Mask&XMaxCommitted != 0 {
		return Judgement{Inserted: true, Deleted: !s.InProgressAt(v.XMax), Hints: hints}, nil
	}
	if s.IsOwn(v.XMax) {
		return Judgement{Inserted: true, Deleted: true, Hints: hints}, nil
	}
	if s.InProgressAt(v.XMax) {
		return Judgement{Inserted: true, Hints: hints}, nil
	}
	st, err := src.Status(v.XMax)
	if err != nil {
		return Judgement{}, err
	}
	switch st {
	case Committed:
		if src.IsDurable(v.XMax) {
			hints |= XMaxCommitted
		}
		return Judgement{Inserted: true, Deleted: true, Hints: hints}, nil
	case Aborted:
		return Judgement{Inserted: true, Hints: hints | XMaxInvalid}, nil
	default:
		return Judgement{Inserted: true, Hints: hints}, nil // the deleter crashed
	}
}

// WriteCheck is what a writer may do with the newest version of a row.
type WriteCheck int

const (
	// WriteOK: no other transaction holds the row; write a new version.
	WriteOK WriteCheck = iota
	// WriteWait: another running transaction inserted, deleted or locked
	// the row; wait for its xid lock, then look again.
	WriteWait
	// WriteConflict: a transaction the snapshot does not see changed the
	// row and committed. Under Repeatable Read that is a serialization
	// failure (first updater wins); under Read Committed the caller takes a
	// new snapshot and looks again, after waiting for the committer's xid
	// lock: a committer records its outcome in the CLOG before it leaves
	// the ProcArray, so in between a new snapshot still lists it and a
	// caller that looked again at once would spin until it left.
	WriteConflict
)

func (w WriteCheck) String() string {
	return [...]string{"ok", "wait", "conflict"}[w]
}

// WriteVerdict is CheckWrite's answer for one version.
type WriteVerdict struct {
	// Check says what the writer may do.
	Check WriteCheck
	// Holder is the other transaction: with WriteWait the xid to wait
	// for, with WriteConflict the committed xid the snapshot missed;
	// InvalidXID with WriteOK.
	Holder base.XID
	// Hints are the hint bits that may now be set on the version, as
	// Visible returns them.
	Hints Infomask
}

// CheckWrite classifies the newest version v of a row for a writer with
// snapshot s (PostgreSQL's HeapTupleSatisfiesUpdate); see WriteVerdict.
// Versions whose insert aborted are WriteOK: the row is free (the caller
// skips them to find the row's real current version). The verdict is
// returned by value and nothing is allocated.
func CheckWrite(v Version, s *Snapshot, src StatusSource) (WriteVerdict, error) {
	var hints Infomask
	inserted := func() (WriteCheck, base.XID, bool, error) {
		switch {
		case v.Mask&XMinInvalid != 0:
			return WriteOK, 0, true, nil
		case v.XMin == FrozenXID || s.IsOwn(v.XMin):
			return 0, 0, false, nil
		case v.Mask&XMinCommitted != 0:
			if s.InProgressAt(v.XMin) {
				return WriteConflict, v.XMin, true, nil
			}
			return 0, 0, false, nil
		}
		st, err := src.Status(v.XMin)
		if err != nil {
			return 0, 0, true, err
		}
		switch st {
		case Aborted:
			hints |= XMinInvalid
			return WriteOK, 0, true, nil
		case Committed:
			if src.IsDurable(v.XMin) {
				hints |= XMinCommitted
			}
			if s.InProgressAt(v.XMin) {
				return WriteConflict, v.XMin, true, nil
			}
			return 0, 0, false, nil
		default:
			return WriteWait, v.XMin, true, nil
		}
	}
	if w, xid, done, err := inserted(); done || err != nil {
		return WriteVerdict{Check: w, Holder: xid, Hints: hints}, err
	}

	if v.XMax == base.InvalidXID || v.Mask&XMaxInvalid != 0 || s.IsOwn(v.XMax) {
		return WriteVerdict{Check: WriteOK, Hints: hints}, nil
	}
	if v.Mask&XMaxCommitted != 0 {
		if v.Mask&XMaxLockOnly != 0 {
			return WriteVerdict{Check: WriteOK, Hints: hints}, nil // the locker is gone
		}
		if s.InProgressAt(v.XMax) {
			return WriteVerdict{Check: WriteConflict, Holder: v.XMax, Hints: hints}, nil
		}
		return WriteVerdict{Check: WriteOK, Hints: hints}, nil // deleted before our snapshot: the key is free
	}
	st, err := src.Status(v.XMax)
	if err != nil {
		return WriteVerdict{Hints: hints}, err
	}
	switch st {
	case Aborted:
		return WriteVerdict{Check: WriteOK, Hints: hints | XMaxInvalid}, nil
	case Committed:
		if src.IsDurable(v.XMax) {
			hints |= XMaxCommitted
		}
		if v.Mask&XMaxLockOnly != 0 {
			return WriteVerdict{Check: WriteOK, Hints: hints}, nil
		}
		if s.InProgressAt(v.XMax) {
			return WriteVerdict{Check: WriteConflict, Holder: v.XMax, Hints: hints}, nil
		}
		return WriteVerdict{Check: WriteOK, Hints: hints}, nil
	default:
		return WriteVerdict{Check: WriteWait, Holder: v.XMax, Hints: hints}, nil
	}
}
