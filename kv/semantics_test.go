package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/table"
)

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// TestBankTransfer moves money between accounts from several goroutines
// under Repeatable Read with Update's retries, while readers sum every
// account in one snapshot: the sum never changes.
func TestBankTransfer(t *testing.T) {
	const accounts, start = 20, 1000
	db := openMem(t, vfs.NewMemFS(), smallOpts())
	defer db.Close()
	ctx := context.Background()
	key := func(i int) []byte { return fmt.Appendf(nil, "acct%02d", i) }
	if err := db.Update(ctx, func(tx *Tx) error {
		for i := range accounts {
			if err := tx.Put(key(i), u64(start)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	transfers := 300
	if raceEnabled {
		transfers = 60
	}
	var wg sync.WaitGroup
	var moved, failed atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for range transfers {
				from, to := r.IntN(accounts), r.IntN(accounts)
				if from == to {
					continue
				}
				err := db.Update(ctx, func(tx *Tx) error {
					fv, err := tx.Get(key(from))
					if err != nil {
						return err
					}
					tv, err := tx.Get(key(to))
					if err != nil {
						return err
					}
					amt := uint64(r.IntN(10))
					f, g := binary.BigEndian.Uint64(fv), binary.BigEndian.Uint64(tv)
					if f < amt {
						return nil
					}
					if err := tx.Put(key(from), u64(f-amt)); err != nil {
						return err
					}
					return tx.Put(key(to), u64(g+amt))
				})
				if err != nil {
					failed.Add(1)
					if !errors.Is(err, ErrSerialization) && !errors.Is(err, ErrDeadlock) {
						t.Error(err)
						return
					}
				} else {
					moved.Add(1)
				}
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := db.View(ctx, func(tx *Tx) error {
					var sum uint64
					it := tx.Scan(nil, nil, nil)
					for it.Next() {
						sum += binary.BigEndian.Uint64(it.Value())
					}
					if err := it.Close(); err != nil {
						return err
					}
					if sum != accounts*start {
						return fmt.Errorf("sum of accounts is %d, want %d", sum, accounts*start)
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	t.Logf("%d transfers committed, %d gave up after retries", moved.Load(), failed.Load())
	if moved.Load() == 0 {
		t.Fatal("no transfer committed")
	}
}

// TestConcurrentUpdateIsolation: a second writer of a row updated by a
// transaction that commits meanwhile waits for it; then under Repeatable
// Read it fails with ErrSerialization, under Read Committed it goes ahead
// on the newest version (so the increments are not lost).
func TestConcurrentUpdateIsolation(t *testing.T) {
	for _, iso := range []Isolation{RepeatableRead, ReadCommitted} {
		t.Run(iso.String(), func(t *testing.T) {
			db := openMem(t, vfs.NewMemFS(), smallOpts())
			defer db.Close()
			ctx := context.Background()
			db.Put([]byte("x"), u64(600))
			t1, _ := db.Begin(ctx, TxOptions{Isolation: iso})
			t2, _ := db.Begin(ctx, TxOptions{Isolation: iso})
			if _, err := t2.Get([]byte("x")); err != nil { // t2's snapshot predates t1's commit
				t.Fatal(err)
			}
			v, _ := t1.Get([]byte("x"))
			if err := t1.Put([]byte("x"), u64(binary.BigEndian.Uint64(v)-200)); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				// Read-modify-write under RC reads inside the write: use
				// GetForUpdate to read the newest committed value.
				var err error
				if iso == ReadCommitted {
					var cur []byte
					cur, err = t2.GetForUpdate([]byte("x"))
					if err == nil {
						err = t2.Put([]byte("x"), u64(binary.BigEndian.Uint64(cur)+450))
					}
				} else {
					err = t2.Put([]byte("x"), u64(600+450))
				}
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("second writer did not wait: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			if err := t1.Commit(); err != nil {
				t.Fatal(err)
			}
			err := <-done
			if iso == RepeatableRead {
				if !errors.Is(err, ErrSerialization) {
					t.Fatalf("RR second writer: %v, want ErrSerialization", err)
				}
				if err := t2.Commit(); !errors.Is(err, ErrTxDone) {
					t.Fatalf("commit after serialization failure: %v", err)
				}
				if v, _ := db.Get([]byte("x")); binary.BigEndian.Uint64(v) != 400 {
					t.Fatalf("x = %d, want 400", binary.BigEndian.Uint64(v))
				}
				return
			}
			if err != nil {
				t.Fatalf("RC second writer: %v", err)
			}
			if err := t2.Commit(); err != nil {
				t.Fatal(err)
			}
			if v, _ := db.Get([]byte("x")); binary.BigEndian.Uint64(v) != 850 {
				t.Fatalf("x = %d, want 850 (no lost update)", binary.BigEndian.Uint64(v))
			}
		})
	}
}

// TestGetForUpdatePreventsLostUpdates: counters incremented with
// GetForUpdate under Read Committed lose nothing.
func TestGetForUpdatePreventsLostUpdates(t *testing.T) {
	db := openMem(t, vfs.NewMemFS(), smallOpts())
	defer db.Close()
	ctx := context.Background()
	db.Put([]byte("n"), u64(0))
	const workers, each = 4, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				tx, err := db.Begin(ctx, TxOptions{Isolation: ReadCommitted})
				if err != nil {
					t.Error(err)
					return
				}
				v, err := tx.GetForUpdate([]byte("n"))
				if err == nil {
					err = tx.Put([]byte("n"), u64(binary.BigEndian.Uint64(v)+1))
				}
				if err == nil {
					err = tx.Commit()
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v, _ := db.Get([]byte("n")); binary.BigEndian.Uint64(v) != workers*each {
		t.Fatalf("counter = %d, want %d", binary.BigEndian.Uint64(v), workers*each)
	}
}

func TestDeadlockIsReported(t *testing.T) {
	db := openMem(t, vfs.NewMemFS(), smallOpts())
	defer db.Close()
	ctx := context.Background()
	db.Put([]byte("a"), []byte("1"))
	db.Put([]byte("b"), []byte("1"))
	t1, _ := db.Begin(ctx, TxOptions{})
	t2, _ := db.Begin(ctx, TxOptions{})
	if err := t1.Put([]byte("a"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := t2.Put([]byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- t1.Put([]byte("b"), []byte("3")) }()
	go func() { errs <- t2.Put([]byte("a"), []byte("3")) }()
	e1 := <-errs
	if !errors.Is(e1, ErrDeadlock) {
		t.Fatalf("first to return: %v, want ErrDeadlock", e1)
	}
	// The victim rolled back, releasing its rows: the other goes on.
	if e2 := <-errs; e2 != nil {
		t.Fatalf("survivor: %v", e2)
	}
	for _, tx := range []*Tx{t1, t2} {
		tx.Commit()
	}
	st, _ := db.Stats()
	if st.Database.Deadlocks != 1 {
		t.Fatalf("deadlocks = %d", st.Database.Deadlocks)
	}
}

func TestKeyspaces(t *testing.T) {
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	ctx := context.Background()
	if err := db.CreateKeyspace("users"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateKeyspace("users"); !errors.Is(err, ErrKeyspaceExists) {
		t.Fatalf("second create: %v", err)
	}
	err := db.Update(ctx, func(tx *Tx) error {
		if err := tx.Keyspace("users").Put([]byte("k"), []byte("in users")); err != nil {
			return err
		}
		return tx.Put([]byte("k"), []byte("in default"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// A keyspace created in a transaction that rolls back never existed.
	tx, _ := db.Begin(ctx, TxOptions{})
	if err := tx.CreateKeyspace("ghost"); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	db.View(ctx, func(tx *Tx) error {
		if v, err := tx.Keyspace("users").Get([]byte("k")); err != nil || string(v) != "in users" {
			t.Errorf("users/k = %q, %v", v, err)
		}
		if _, err := tx.Keyspace("ghost").Get([]byte("k")); !errors.Is(err, ErrNoKeyspace) {
			t.Errorf("ghost keyspace: %v", err)
		}
		names, _ := tx.Keyspaces()
		if len(names) != 1 || names[0] != "users" {
			t.Errorf("keyspaces %v", names)
		}
		return nil
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openMem(t, fs, smallOpts())
	if err := db.DropKeyspace("users"); err != nil {
		t.Fatal(err)
	}
	db.View(ctx, func(tx *Tx) error {
		if _, err := tx.Keyspace("users").Get([]byte("k")); !errors.Is(err, ErrNoKeyspace) {
			t.Errorf("dropped keyspace: %v", err)
		}
		if v, err := tx.Get([]byte("k")); err != nil || string(v) != "in default" {
			t.Errorf("default/k = %q, %v", v, err)
		}
		return nil
	})
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Only the catalog's and the default keyspace's files remain.
	names, _ := fs.List("/db/base")
	for _, n := range names {
		if rel, ok := relOfFile(n); ok && rel >= firstUserRel {
			t.Errorf("file %s of a dropped or aborted keyspace left behind", n)
		}
	}
}

// TestPreparedTransactionSurvivesCrash: a prepared transaction's writes
// stay invisible and its rows locked across a crash, until CommitPrepared.
func TestPreparedTransactionSurvivesCrash(t *testing.T) {
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	ctx := context.Background()
	db.Put([]byte("row"), []byte("old"))
	tx, _ := db.Begin(ctx, TxOptions{})
	if err := tx.Put([]byte("row"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Put([]byte("fresh"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Prepare("pay-42"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Commit after Prepare: %v", err)
	}
	crashed := fs.Clone()
	db.Close()
	crashed.Crash(vfs.CrashOptions{})
	db = openMem(t, crashed, smallOpts())
	defer db.Close()
	if gids, _ := db.Prepared(); len(gids) != 1 || gids[0] != "pay-42" {
		t.Fatalf("prepared after crash: %v", gids)
	}
	if v, _ := db.Get([]byte("row")); string(v) != "old" {
		t.Fatalf("prepared write visible before commit: %q", v)
	}
	// A writer of the row waits for the decision.
	w, _ := db.Begin(ctx, TxOptions{Isolation: ReadCommitted})
	done := make(chan error, 1)
	go func() { done <- w.Put([]byte("row"), []byte("third")) }()
	select {
	case err := <-done:
		t.Fatalf("writer did not wait for the prepared transaction: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	if err := db.CommitPrepared("pay-42"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, _ := db.Get([]byte("fresh")); string(v) != "x" {
		t.Fatalf("committed prepared write: %q", v)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.Get([]byte("row")); string(v) != "third" {
		t.Fatalf("row = %q, want third", v)
	}
	if err := db.RollbackPrepared("pay-42"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second decision: %v", err)
	}
}

// TestReadCommittedReadNeverMissesAnUpdatedRow: readers must take their
// snapshot before looking the key up in the index. Otherwise a reader can
// find the index entry of the old version, then take a snapshot in which
// the updater has committed, see the old version as deleted, and report a
// row that exists as not found.
func TestReadCommittedReadNeverMissesAnUpdatedRow(t *testing.T) {
	db := openMem(t, vfs.NewMemFS(), smallOpts())
	defer db.Close()
	ctx := context.Background()
	const keys = 4
	for i := range keys {
		db.Put(fmt.Appendf(nil, "hot%d", i), []byte("0"))
	}
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				db.Update(ctx, func(tx *Tx) error {
					return tx.Put(fmt.Appendf(nil, "hot%d", (n+w)%keys), fmt.Appendf(nil, "%d", n))
				})
			}
		})
	}
	reads := 20000
	if raceEnabled {
		reads = 3000
	}
	var missed int
	for i := range reads {
		tx, _ := db.Begin(ctx, TxOptions{Isolation: ReadCommitted, ReadOnly: true})
		if _, err := tx.Get(fmt.Appendf(nil, "hot%d", i%keys)); err != nil {
			missed++
		}
		tx.Commit()
	}
	close(stop)
	writers.Wait()
	if missed > 0 {
		t.Fatalf("%d of %d reads of rows that always exist said not found", missed, reads)
	}
}

// TestReadSnapshotPrecedesLookup replays that window deterministically: an
// update commits right after the reader's index lookup.
func TestReadSnapshotPrecedesLookup(t *testing.T) {
	db := openMem(t, vfs.NewMemFS(), smallOpts())
	defer db.Close()
	ctx := context.Background()
	db.Put([]byte("k"), []byte("old"))
	table.TestHooks.AfterLookup = func() {
		table.TestHooks.AfterLookup = nil
		if err := db.Put([]byte("k"), []byte("new")); err != nil {
			t.Error(err)
		}
	}
	defer func() { table.TestHooks.AfterLookup = nil }()
	tx, _ := db.Begin(ctx, TxOptions{Isolation: ReadCommitted})
	v, err := tx.Get([]byte("k"))
	if err != nil || string(v) != "old" {
		t.Fatalf("read racing an update: %q, %v; want old (the snapshot predates the update)", v, err)
	}
	if v, err := tx.Get([]byte("k")); err != nil || string(v) != "new" {
		t.Fatalf("next Read Committed read: %q, %v; want new", v, err)
	}
	tx.Commit()
}
