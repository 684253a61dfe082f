package kv

import (
	"context"
	"crypto/rand"
	"errors"
	"syscall"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
)

// A statement that fails after it began changing a row aborts its
// transaction: a Put whose new version cannot be stored after the old
// version's xmax was set must not leave a transaction that commits a
// delete (issue 11, defect 8).
func TestFailedPutAbortsTransaction(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	defer db.Close()
	if err := db.Put([]byte("k"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	tx, _ := db.Begin(ctx, TxOptions{})
	if err := tx.Put([]byte("other"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	// The new version needs a page of its own, and the disk is full.
	big := make([]byte, 7000)
	rand.Read(big)
	fs.SetSpaceLimit(1)
	err := tx.Put([]byte("k"), big)
	fs.SetSpaceLimit(0)
	if err == nil {
		t.Skip("the put did not need to grow a file")
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put on a full disk: %v, want ENOSPC", err)
	}
	for name, call := range map[string]func() error{
		"Get":    func() error { _, err := tx.Get([]byte("k")); return err },
		"Put":    func() error { return tx.Put([]byte("k2"), nil) },
		"Delete": func() error { return tx.Delete([]byte("k")) },
		"Scan":   func() error { it := tx.Scan(nil, nil, nil); it.Next(); return it.Close() },
	} {
		if err := call(); !errors.Is(err, ErrTxAborted) {
			t.Errorf("%s after a failed statement: %v, want ErrTxAborted", name, err)
		}
	}
	if err := tx.Commit(); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("Commit after a failed statement: %v, want ErrTxAborted", err)
	}
	if err := tx.Rollback(); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Rollback after the failed Commit: %v, want ErrTxDone", err)
	}
	if v, err := db.Get([]byte("k")); err != nil || string(v) != "old" {
		t.Fatalf("k after the aborted transaction: %q, %v; want the old value", v, err)
	}
	if _, err := db.Get([]byte("other")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write of the aborted transaction visible: %v", err)
	}
	// The row is not left locked: a new writer goes ahead.
	if err := db.Put([]byte("k"), []byte("new")); err != nil {
		t.Fatal(err)
	}
}

// Answers are not failures: ErrNotFound and validation errors leave the
// transaction usable, and Rollback of an aborted transaction is nil.
func TestAnswersDoNotAbort(t *testing.T) {
	ctx := context.Background()
	db := openMem(t, vfs.NewMemFS(), smallOpts())
	defer db.Close()
	tx, _ := db.Begin(ctx, TxOptions{})
	if _, err := tx.Get([]byte("none")); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := tx.GetForUpdate([]byte("none")); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := tx.Put(nil, nil); !errors.Is(err, ErrEmptyKey) {
		t.Fatal(err)
	}
	if err := tx.Put(make([]byte, MaxKeySize+1), nil); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatal(err)
	}
	if err := tx.Keyspace("nope").Put([]byte("a"), nil); !errors.Is(err, ErrNoKeyspace) {
		t.Fatal(err)
	}
	if err := tx.Put([]byte("a"), []byte("1")); err != nil {
		t.Fatalf("put after answers: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// A canceled lock wait is a failed statement.
	holder, _ := db.Begin(ctx, TxOptions{})
	if err := holder.Put([]byte("a"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	waiter, _ := db.Begin(cctx, TxOptions{})
	cancel()
	if err := waiter.Put([]byte("a"), []byte("3")); !errors.Is(err, context.Canceled) {
		t.Fatalf("put with a canceled context: %v", err)
	}
	if err := waiter.Put([]byte("b"), []byte("3")); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("put after a canceled one: %v, want ErrTxAborted", err)
	}
	if err := waiter.Rollback(); err != nil {
		t.Fatalf("Rollback of an aborted transaction: %v", err)
	}
	holder.Commit()
}

// A statement that finds every buffer pinned fails with ErrBusy (and the
// pool's own sentinel), and aborts its transaction.
func TestBusyPool(t *testing.T) {
	ctx := context.Background()
	db := openMem(t, vfs.NewMemFS(), smallOpts())
	defer db.Close()
	tx, _ := db.Begin(ctx, TxOptions{})
	err := tx.fail(pagecache.ErrNoUnpinnedBuffers)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, pagecache.ErrNoUnpinnedBuffers) {
		t.Fatalf("fail(ErrNoUnpinnedBuffers) = %v, want ErrBusy matching the pool's sentinel too", err)
	}
	if err := tx.Put([]byte("a"), nil); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("after ErrBusy: %v, want ErrTxAborted", err)
	}
}
