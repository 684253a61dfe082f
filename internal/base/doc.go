// Package base holds the vocabulary every layer of heapkv shares: the named
// id types (LSN, XID, RelFileNode, BlockNum, TID), the corruption marker, the
// key and value limits with the one key check (CheckKey) and the fatal-stop
// state.
//
// It sits below pagecache so that xlog, txn and the access methods can name
// the same things without importing each other sideways, the way pebble keeps
// its shared types in internal/base. Besides the types it holds Halt, the
// one fatal state every subsystem of an open database shares.
package base
