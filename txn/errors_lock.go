package txn

import "errors"

// Errors of the lock manager (lockmgr.go).
var (
	// ErrDeadlock is returned by LockManager.Wait to the one waiter of a
	// wait-for cycle that found the cycle. Its transaction must abort (and
	// so Release its xid) for the others to proceed. The wrapped message
	// lists the cycle.
	ErrDeadlock = errors.New("txn: deadlock detected")
	// ErrAlreadyWaiting is returned by LockManager.Wait when the waiter is
	// already waiting for an xid in another call: a transaction waits for
	// one xid at a time. It is a bug of the caller.
	ErrAlreadyWaiting = errors.New("txn: transaction is already waiting for a lock")
	// ErrLockTimeout is returned by a wait that lasted longer than
	// lock_timeout (LockManagerConfig.LockTimeout, Config.LockTimeout), in
	// PostgreSQL's words. The statement fails; the transaction may go on
	// or roll back, as the caller decides.
	ErrLockTimeout = errors.New("txn: canceling statement due to lock timeout")
)
