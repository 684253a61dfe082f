package table

import (
	"log/slog"

	"github.com/heapkv/heapkv/btree"
	"github.com/heapkv/heapkv/heap"
	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// Config is what a Table works with.
type Config struct {
	// Pool is the shared buffer pool. Required.
	Pool *pagecache.Pool
	// WAL logs every page change of both relations. Required.
	WAL *xlog.Log
	// FS and Dir locate the heap's free space map file (see heap.Config).
	FS  vfs.FS
	Dir string
	// Status answers visibility's questions (the transaction manager).
	// Required.
	Status txn.StatusSource
	// Logger receives the free space map's save failures. Default: discard.
	Logger *slog.Logger
}

// Table is one keyspace's pair of relations: a heap holding every version
// of every row and a B+tree with one entry per key pointing at the newest
// version. It is safe for concurrent use. See doc.go for its rules.
type Table struct {
	pool   *pagecache.Pool
	heap   *heap.Heap
	tree   *btree.Tree
	status txn.StatusSource
}

// RegisterRedo registers the redo of both access methods with wal; it must
// run before recovery.
func RegisterRedo(wal *xlog.Log) error {
	if err := heap.RegisterRedo(wal); err != nil {
		return err
	}
	return btree.RegisterRedo(wal)
}

// Open opens the table whose heap is heapRel and whose B+tree is indexRel,
// creating either relation that does not exist yet.
func Open(cfg Config, heapRel, indexRel base.RelFileNode) (*Table, error) {
	h, err := heap.Open(heap.Config{Pool: cfg.Pool, WAL: cfg.WAL, FS: cfg.FS, Dir: cfg.Dir, Rel: heapRel, Status: cfg.Status, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	var t *btree.Tree
	if n, err := cfg.Pool.Storage().NBlocks(indexRel); err == nil && n > 0 {
		t, err = btree.Open(cfg.Pool, cfg.WAL, indexRel)
		if err != nil {
			return nil, err
		}
	} else if t, err = btree.Create(cfg.Pool, cfg.WAL, indexRel); err != nil {
		return nil, err
	}
	return &Table{pool: cfg.Pool, heap: h, tree: t, status: cfg.Status}, nil
}

// HeapRel returns the heap relation.
func (t *Table) HeapRel() base.RelFileNode { return t.heap.Rel() }

// IndexRel returns the B+tree relation.
func (t *Table) IndexRel() base.RelFileNode { return t.tree.Rel() }

// SaveFSM writes the heap's free space map to its file.
func (t *Table) SaveFSM() error { return t.heap.SaveFSM() }

// Close stops the table's checkpoint work (the free space map's hook). The
// relations' pages stay in the pool; dropping them is the caller's.
func (t *Table) Close() { t.heap.Close() }

// Stats are a table's counters.
type Stats struct {
	Inserts   uint64 // heap versions inserted since open
	HeapPages uint64 // the heap relation's size in pages
}

// Stats returns the counters.
func (t *Table) Stats() Stats {
	n, _ := t.heap.NBlocks()
	return Stats{Inserts: t.heap.Stats().Inserts, HeapPages: uint64(n)}
}

// Check runs the verifiers over both relations (heap.Check and btree.Check,
// like PostgreSQL's amcheck) and returns what each found.
func (t *Table) Check() (heapErr, indexErr error) {
	return heap.Check(t.pool, t.heap.Rel()), btree.Check(t.pool, t.tree.Rel())
}

// TestHooks let tests of this package and the layers above stop an
// operation in a window that is otherwise too short to hit. Nil in
// production; set them only while no operation runs.
var TestHooks struct {
	// AfterLookup runs in Get between the index lookup and the chain walk.
	AfterLookup func()
	// AfterNewest runs in a writer's acquire between heap.Newest and
	// txn.CheckWrite.
	AfterNewest func()
}
