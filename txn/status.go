package txn

import "github.com/heapkv/heapkv/internal/base"

// Status is a transaction's state as the commit log records it: two bits per
// xid.
type Status uint8

const (
	// InProgress is the state of a running transaction, and of one that
	// never finished (recovery rewrites those to Aborted).
	InProgress Status = 0
	// Committed: its changes are visible to snapshots taken after it.
	Committed Status = 1
	// Aborted: its changes are visible to nobody.
	Aborted Status = 2
	// SubCommitted marks a subtransaction whose savepoint was released
	// while its parent still runs; it counts as in progress until the
	// parent's commit turns it to Committed.
	SubCommitted Status = 3
)

func (s Status) String() string {
	switch s {
	case InProgress:
		return "in progress"
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	case SubCommitted:
		return "sub-committed"
	}
	return "invalid"
}

// FirstNormalXID is the first xid handed to a transaction. Below it: 0 is
// InvalidXID; 1 is FrozenXID, committed for everyone (used for data that
// predates any snapshot, such as bootstrap rows).
const (
	FrozenXID      base.XID = 1
	FirstNormalXID base.XID = 3
)
