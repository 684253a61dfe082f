package btree

import "errors"

// Sentinel errors of package btree. Callers test them with errors.Is; the
// returned errors may wrap them with the key length or relation concerned.
// Damage found in a page wraps base.ErrCorrupt instead and names the
// relation, the block and the problem.
var (
	// ErrKeyTooLarge is returned for a key longer than MaxKeySize bytes.
	// Nothing is changed.
	ErrKeyTooLarge = errors.New("btree: key too large")

	// ErrEmptyKey is returned for a key of zero bytes. Nothing is changed.
	ErrEmptyKey = errors.New("btree: empty key")

	// ErrInvalidTID is returned by Insert and Repoint for a TID that cannot
	// point at a tuple (offset 0 or block InvalidBlock).
	ErrInvalidTID = errors.New("btree: invalid TID")

	// ErrRelationExists is returned by Create for a relation that already
	// has blocks.
	ErrRelationExists = errors.New("btree: relation already exists")

	// ErrTreeTooTall is returned when a split would need a level above
	// MaxLevels; with keys of at most MaxKeySize bytes this needs more
	// pages than a relation can have.
	ErrTreeTooTall = errors.New("btree: tree too tall")
)
