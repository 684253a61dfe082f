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
	inserted, deleted, hints, err := Judge(v, s, src)
	return inserted && !deleted, hints, err
}

// Judge splits Visible's answer in two, which a walk down a version chain
// needs: inserted says s sees the insert of v; deleted says s also sees a
// deletion of it. A reader that finds inserted && deleted stops (the row was
// gone at its snapshot); one that finds !inserted moves on to the older
// version.
func Judge(v Version, s *Snapshot, src StatusSource) (inserted, deleted bool, hints Infomask, err error) {
	// Was the inserting transaction committed, as far as s is concerned?
	switch {
	case v.Mask&XMinInvalid != 0:
		return false, false, 0, nil
	case v.XMin == FrozenXID:
		// Committed for everyone.
	case v.Mask&XMinCommitted != 0:
		if s.InProgressAt(v.XMin) {
			return false, false, 0, nil
		}
	case s.IsOwn(v.XMin):
		// Inserted by us: visible unless we deleted it ourselves (a delete
		// by a rolled-back subtransaction of ours does not count).
		if v.XMax == base.InvalidXID || v.Mask&(XMaxInvalid|XMaxLockOnly) != 0 {
			return true, false, 0, nil
		}
		return true, s.IsOwn(v.XMax), 0, nil
	case s.InProgressAt(v.XMin):
		return false, false, 0, nil
	default:
		st, err := src.Status(v.XMin)
		if err != nil {
			return false, false, 0, err
		}
		switch st {
		case Committed:
			if src.IsDurable(v.XMin) {
				hints |= XMinCommitted
			}
		case Aborted:
			return false, false, XMinInvalid, nil
		default:
			// Not running at snapshot time yet not committed: it crashed
			// (recovery marks such xids aborted) or is a subtransaction
			// of a transaction still running. Either way, unseen.
			return false, false, 0, nil
		}
	}

	// The insert is seen. Did a deletion we can see follow it?
	if v.XMax == base.InvalidXID || v.Mask&(XMaxInvalid|XMaxLockOnly) != 0 {
		return true, false, hints, nil
	}
	if v.Mask&XMaxCommitted != 0 {
		return true, !s.InProgressAt(v.XMax), hints, nil
	}
	if s.IsOwn(v.XMax) {
		return true, true, hints, nil
	}
	if s.InProgressAt(v.XMax) {
		return true, false, hints, nil
	}
	st, err := src.Status(v.XMax)
	if err != nil {
		return false, false, 0, err
	}
	switch st {
	case Committed:
		if src.IsDurable(v.XMax) {
			hints |= XMaxCommitted
		}
		return true, true, hints, nil
	case Aborted:
		return true, false, hints | XMaxInvalid, nil
	default:
		return true, false, hints, nil // the deleter crashed
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

// CheckWrite classifies the newest version v of a row for a writer with
// snapshot s (PostgreSQL's HeapTupleSatisfiesUpdate). With WriteWait it
// returns the xid to wait for; with WriteConflict, the committed xid the
// snapshot missed. lockOnly says the writer only wants a row
// lock of the same strength as an existing lock-only xmax. Versions whose
// insert aborted are WriteOK: the row is free (the caller skips them to find
// the row's real current version).
func CheckWrite(v Version, s *Snapshot, src StatusSource) (WriteCheck, base.XID, Infomask, error) {
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
		return w, xid, hints, err
	}

	if v.XMax == base.InvalidXID || v.Mask&XMaxInvalid != 0 || s.IsOwn(v.XMax) {
		return WriteOK, 0, hints, nil
	}
	if v.Mask&XMaxCommitted != 0 {
		if v.Mask&XMaxLockOnly != 0 {
			return WriteOK, 0, hints, nil // the locker is gone
		}
		if s.InProgressAt(v.XMax) {
			return WriteConflict, v.XMax, hints, nil
		}
		return WriteOK, 0, hints, nil // deleted before our snapshot: the key is free
	}
	st, err := src.Status(v.XMax)
	if err != nil {
		return 0, 0, hints, err
	}
	switch st {
	case Aborted:
		return WriteOK, 0, hints | XMaxInvalid, nil
	case Committed:
		if src.IsDurable(v.XMax) {
			hints |= XMaxCommitted
		}
		if v.Mask&XMaxLockOnly != 0 {
			return WriteOK, 0, hints, nil
		}
		if s.InProgressAt(v.XMax) {
			return WriteConflict, v.XMax, hints, nil
		}
		return WriteOK, 0, hints, nil
	default:
		return WriteWait, v.XMax, hints, nil
	}
}
