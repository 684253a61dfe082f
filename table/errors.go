package table

import (
	"errors"

	"github.com/heapkv/heapkv/heap"
)

var (
	// ErrSerialization: a write met a row changed by a transaction that
	// committed after the writer's Repeatable Read snapshot (first updater
	// wins). The caller rolls the transaction back.
	ErrSerialization = errors.New("table: row changed after the snapshot")

	// ErrValueTooLarge: a value over heap's limit (heap.ErrValueTooLarge,
	// re-exported so that callers need not import heap).
	ErrValueTooLarge = heap.ErrValueTooLarge
)
