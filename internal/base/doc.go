// Package base holds the vocabulary every layer of heapkv shares: the named
// id types (LSN, XID, RelFileNode, BlockNum) and the corruption marker.
//
// It sits below pagecache so that xlog, txn and the access methods can name
// the same things without importing each other sideways, the way pebble keeps
// its shared types in internal/base. It has no state and no dependencies.
package base
