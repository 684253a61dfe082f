package heap

import "errors"

// Sentinel errors of package heap. Callers test them with errors.Is; the
// returned errors wrap them with the relation, block and offset concerned.
// Damage found in bytes read from disk wraps base.ErrCorrupt instead.
var (
	// ErrEmptyKey is returned by Insert for a key of zero bytes.
	ErrEmptyKey = errors.New("heap: empty key")
	// ErrKeyTooLarge is returned by Insert for a key over MaxKeySize bytes.
	ErrKeyTooLarge = errors.New("heap: key longer than 1024 bytes")
	// ErrValueTooLarge is returned by Insert for a value over MaxValueSize
	// bytes. Nothing is written.
	ErrValueTooLarge = errors.New("heap: value larger than 64 MiB")
	// ErrNoTuple means a TID does not hold a heap tuple of the key asked
	// for: its line pointer is unused or dead, lies past the end of the page
	// or relation, holds a TOAST chunk, or holds another key (the slot was
	// freed and reused). It is an answer, not damage.
	ErrNoTuple = errors.New("heap: no tuple of this key at this TID")
	// ErrXmaxChanged is returned by SetXmax when the tuple's xmax is no
	// longer the one the caller judged with txn.CheckWrite: another writer
	// got there first, so the caller must look at the row again.
	ErrXmaxChanged = errors.New("heap: tuple xmax changed since it was judged")
	// ErrBadConfig is returned by Open for a configuration it cannot use.
	ErrBadConfig = errors.New("heap: invalid configuration")
)
