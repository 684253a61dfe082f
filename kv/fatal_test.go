package kv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/vfs"
)

// One fatal state (issue 11): a failed WAL fsync stops the engine. The
// committer gets ErrEngineStopped, a writer waiting for its row lock is
// released with it, every later call returns it, Close returns promptly,
// and the next Open recovers every commit acknowledged before.
func TestWALSyncFailureStopsEngine(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	for i := range 10 {
		if err := db.Put(fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	holder, _ := db.Begin(ctx, TxOptions{})
	if err := holder.Put([]byte("k0"), []byte("holder")); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		waiter, err := db.Begin(ctx, TxOptions{})
		if err != nil {
			waited <- err
			return
		}
		err = waiter.Put([]byte("k0"), []byte("waiter"))
		waiter.Rollback()
		waited <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the waiter queue on holder's xid

	fs.InjectError(vfs.Injection{Op: vfs.OpSync, Path: "/db/wal/", Persistent: true})
	if err := holder.Commit(); !errors.Is(err, ErrEngineStopped) {
		t.Fatalf("commit whose WAL fsync fails: %v, want ErrEngineStopped", err)
	}
	select {
	case err := <-waited:
		if !errors.Is(err, ErrEngineStopped) {
			t.Fatalf("waiting writer released with %v, want ErrEngineStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a writer waiting on the failed committer's row lock was never released")
	}
	for name, call := range map[string]func() error{
		"Get":        func() error { _, err := db.Get([]byte("k1")); return err },
		"Put":        func() error { return db.Put([]byte("k1"), []byte("x")) },
		"Begin":      func() error { _, err := db.Begin(ctx, TxOptions{}); return err },
		"Checkpoint": db.Checkpoint,
	} {
		if err := call(); !errors.Is(err, ErrEngineStopped) {
			t.Errorf("%s after the stop: %v, want ErrEngineStopped", name, err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrEngineStopped) {
			t.Fatalf("Close of a stopped engine: %v, want ErrEngineStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a stopped engine hangs")
	}

	fs.ClearInjections()
	fs.Crash(vfs.CrashOptions{Seed: 1, TearProbability: 0.5})
	db = openMem(t, fs, smallOpts())
	defer db.Close()
	for i := range 10 {
		v, err := db.Get(fmt.Appendf(nil, "k%d", i))
		if err != nil || string(v) != "v" && !(i == 0 && string(v) == "holder") {
			t.Fatalf("k%d after recovery: %q, %v", i, v, err)
		}
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// lock_timeout bounds a row-lock wait; the statement fails with
// ErrLockTimeout and aborts its transaction.
func TestLockTimeout(t *testing.T) {
	ctx := context.Background()
	opts := smallOpts()
	opts.LockTimeout = 30 * time.Millisecond
	db := openMem(t, vfs.NewMemFS(), opts)
	defer db.Close()
	holder, _ := db.Begin(ctx, TxOptions{})
	if err := holder.Put([]byte("k"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	waiter, _ := db.Begin(ctx, TxOptions{Isolation: ReadCommitted})
	start := time.Now()
	if _, err := waiter.GetForUpdate([]byte("k")); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("GetForUpdate of a locked row: %v, want ErrLockTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("lock_timeout of 30ms took %v", d)
	}
	if err := waiter.Put([]byte("other"), nil); !errors.Is(err, ErrTxAborted) {
		t.Fatalf("after a lock timeout: %v, want ErrTxAborted", err)
	}
	waiter.Rollback()
	holder.Commit()
	if st, err := db.Stats(); err != nil || st.Database.LockTimeouts != 1 {
		n := st.Database.LockTimeouts
		t.Fatalf("LockTimeouts = %d (%v), want 1", n, err)
	}
}

// A failed fsync of a data file, the CLOG or the WAL during a checkpoint
// stops the engine just the same; the checkpoint does not complete, and
// recovery brings back every acknowledged commit.
func TestCheckpointSyncFailureStopsEngine(t *testing.T) {
	for _, dir := range []string{"/db/base/", "/db/clog/", "/db/wal/"} {
		t.Run(dir, func(t *testing.T) {
			fs := vfs.NewMemFS()
			db := openMem(t, fs, smallOpts())
			for i := range 50 {
				if err := db.Put(fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			control, _ := vfs.ReadFile(fs, "/db/control")
			fs.InjectError(vfs.Injection{Op: vfs.OpSync, Path: dir, Persistent: true})
			if err := db.Checkpoint(); !errors.Is(err, ErrEngineStopped) {
				t.Fatalf("checkpoint whose fsync of %s fails: %v, want ErrEngineStopped", dir, err)
			}
			if err := db.Put([]byte("late"), []byte("x")); !errors.Is(err, ErrEngineStopped) {
				t.Fatalf("put after the stop: %v, want ErrEngineStopped", err)
			}
			if err := db.Close(); !errors.Is(err, ErrEngineStopped) {
				t.Fatalf("Close: %v", err)
			}
			if after, _ := vfs.ReadFile(fs, "/db/control"); string(after) != string(control) {
				t.Fatal("the control file moved although an fsync failed")
			}
			fs.ClearInjections()
			fs.Crash(vfs.CrashOptions{Seed: 2, TearProbability: 0.5})
			db = openMem(t, fs, smallOpts())
			defer db.Close()
			for i := range 50 {
				if v, err := db.Get(fmt.Appendf(nil, "k%02d", i)); err != nil || string(v) != "v" {
					t.Fatalf("k%02d after recovery: %q, %v", i, v, err)
				}
			}
			if err := db.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
