package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/table"
)

var rcForUpdateTxns = flag.Int("rcforupdate.txns", 0, "transactions of TestReadCommittedForUpdateFindsAccounts (0: default)")

// TestReadCommittedForUpdateFindsAccounts is issue 11's defect 3 as a user
// met it: 8 goroutines move money between 16 accounts that always exist.
// Each transaction reads two accounts in key order, writes both back and
// inserts 3 new 200-byte keys; half the goroutines run Repeatable Read with
// Get + Put (some fail with ErrSerialization and roll back), half Read
// Committed with GetForUpdate + Put. A GetForUpdate must never say an
// account is missing, and no money may appear or vanish.
func TestReadCommittedForUpdateFindsAccounts(t *testing.T) {
	const accounts, workers, start = 16, 8, 1000
	txns := 80000
	if testing.Short() || raceEnabled {
		txns = 4000
	}
	if *rcForUpdateTxns > 0 {
		txns = *rcForUpdateTxns
	}
	seed := testutil.Seed(t)
	db := openMem(t, vfs.NewMemFS(), &Options{SharedBuffers: 16 << 20, DeadlockTimeout: 20e6, walSegmentSize: 1 << 20})
	defer db.Close()
	ctx := context.Background()
	acct := func(i int) []byte { return fmt.Appendf(nil, "acct%02d", i) }
	if err := db.Update(ctx, func(tx *Tx) error {
		for i := range accounts {
			if err := tx.Put(acct(i), u64(start)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var next, committed, conflicts, missing atomic.Int64
	var firstMissing sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		iso := RepeatableRead
		if w%2 == 1 {
			iso = ReadCommitted
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
			for {
				n := next.Add(1)
				if n > int64(txns) {
					return
				}
				a, b := r.IntN(accounts), r.IntN(accounts-1)
				if b >= a {
					b++
				}
				a, b = min(a, b), max(a, b)
				tx, err := db.Begin(ctx, TxOptions{Isolation: iso})
				if err != nil {
					t.Error(err)
					return
				}
				err = transfer(tx, acct(a), acct(b), int64(r.IntN(41)-20), func(i int) []byte {
					k := bytes.Repeat([]byte{'x'}, 200)
					copy(k, fmt.Appendf(nil, "new/%d/%d/%d/", w, n, i))
					return k
				})
				if err == nil {
					err = tx.Commit()
				} else if !tx.done {
					tx.Rollback()
				}
				switch {
				case err == nil:
					committed.Add(1)
				case errors.Is(err, ErrSerialization), errors.Is(err, ErrDeadlock):
					conflicts.Add(1)
				case errors.Is(err, ErrNotFound):
					missing.Add(1)
					firstMissing.Do(func() { t.Errorf("transaction %d (%v): %v", n, iso, err) })
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d transactions: %d committed, %d serialization failures or deadlocks, %d found an account missing",
		txns, committed.Load(), conflicts.Load(), missing.Load())
	if m := missing.Load(); m > 0 {
		t.Errorf("%d of %d transactions were told an account that always exists is not found", m, txns)
	}
	var sum uint64
	err := db.View(ctx, func(tx *Tx) error {
		sum = 0
		for i := range accounts {
			v, err := tx.Get(acct(i))
			if err != nil {
				return fmt.Errorf("%s: %w", acct(i), err)
			}
			sum += binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum != accounts*start {
		t.Fatalf("accounts sum to %d, want %d", sum, accounts*start)
	}
}

// transfer moves amt (negative: the other way) from account a to account b
// (a < b) in tx, reading
// both first (GetForUpdate under Read Committed, Get under Repeatable
// Read), and inserts three new keys.
func transfer(tx *Tx, a, b []byte, amt int64, newKey func(int) []byte) error {
	read := tx.Get
	if tx.opts.Isolation == ReadCommitted {
		read = tx.GetForUpdate
	}
	av, err := read(a)
	if err != nil {
		return fmt.Errorf("read %s: %w", a, err)
	}
	bv, err := read(b)
	if err != nil {
		return fmt.Errorf("read %s: %w", b, err)
	}
	x, y := int64(binary.BigEndian.Uint64(av)), int64(binary.BigEndian.Uint64(bv))
	if x-amt < 0 || y+amt < 0 {
		amt = 0
	}
	if err := tx.Put(a, u64(uint64(x-amt))); err != nil {
		return err
	}
	if err := tx.Put(b, u64(uint64(y+amt))); err != nil {
		return err
	}
	for i := range 3 {
		if err := tx.Put(newKey(i), av); err != nil {
			return err
		}
	}
	return nil
}

// TestWriterSkipsVersionAbortedAfterNewest replays defect 3's window
// deterministically. A writer's acquire takes the newest version whose
// insert had not aborted (heap.Newest), then asks txn.CheckWrite about it.
// If the inserter rolls back in between (a Repeatable Read transaction
// that met ErrSerialization on its next row), CheckWrite says the row is
// free and the version, invisible to the writer's snapshot, must not be
// judged as the row: it is garbage, and the row's current version is the
// one below it. Judged, it made GetForUpdate report an existing row as not
// found, Delete delete nothing, and a Repeatable Read Put overwrite a
// commit its snapshot never saw.
func TestWriterSkipsVersionAbortedAfterNewest(t *testing.T) {
	ctx := context.Background()
	k := []byte("acct")
	// setup writes "v1", starts a transaction that updates k to "doomed"
	// and leaves it running, and arms the hook to roll it back the next
	// time a writer is between Newest and CheckWrite.
	setup := func(t *testing.T, db *DB) {
		t.Helper()
		if err := db.Put(k, []byte("v1")); err != nil {
			t.Fatal(err)
		}
		doomed, _ := db.Begin(ctx, TxOptions{})
		if err := doomed.Put(k, []byte("doomed")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { table.TestHooks.AfterNewest = nil })
		table.TestHooks.AfterNewest = func() {
			table.TestHooks.AfterNewest = nil
			if err := doomed.Rollback(); err != nil {
				t.Error(err)
			}
		}
	}
	get := func(t *testing.T, db *DB) string {
		t.Helper()
		v, err := db.Get(k)
		if errors.Is(err, ErrNotFound) {
			return "<not found>"
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}

	t.Run("read committed GetForUpdate", func(t *testing.T) {
		db := openMem(t, vfs.NewMemFS(), smallOpts())
		defer db.Close()
		setup(t, db)
		tx, _ := db.Begin(ctx, TxOptions{Isolation: ReadCommitted})
		v, err := tx.GetForUpdate(k)
		if err != nil || string(v) != "v1" {
			t.Fatalf("GetForUpdate while the newest version's inserter rolls back: %q, %v; want v1", v, err)
		}
		if err := tx.Put(k, []byte("v2")); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := get(t, db); got != "v2" {
			t.Fatalf("after the update: %s, want v2", got)
		}
	})

	t.Run("read committed Delete", func(t *testing.T) {
		db := openMem(t, vfs.NewMemFS(), smallOpts())
		defer db.Close()
		setup(t, db)
		tx, _ := db.Begin(ctx, TxOptions{Isolation: ReadCommitted})
		if err := tx.Delete(k); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := get(t, db); got != "<not found>" {
			t.Fatalf("after a committed Delete: %s, want not found", got)
		}
	})

	t.Run("repeatable read Put", func(t *testing.T) {
		db := openMem(t, vfs.NewMemFS(), smallOpts())
		defer db.Close()
		if err := db.Put(k, []byte("v0")); err != nil {
			t.Fatal(err)
		}
		tx, _ := db.Begin(ctx, TxOptions{})
		if _, err := tx.Get(k); err != nil { // the snapshot predates v1
			t.Fatal(err)
		}
		setup(t, db) // commits v1: first updater
		err := tx.Put(k, []byte("lost v1"))
		if !errors.Is(err, ErrSerialization) {
			t.Fatalf("Repeatable Read Put over a commit after its snapshot: %v, want ErrSerialization", err)
		}
		if got := get(t, db); got != "v1" {
			t.Fatalf("after the failed Put: %s, want v1", got)
		}
	})
}
