package kv

import (
	"context"
	"errors"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

// A keyspace created, or dropped, by a prepared transaction must survive a
// restart with its rows until the transaction is decided (issue 11,
// defect 2): the orphan sweep at Open cannot see a prepared catalog row
// with a snapshot, and used to remove the new keyspace's files.
func TestPreparedKeyspaceSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	prepareCreate := func(t *testing.T, fs *vfs.MemFS) {
		db := openMem(t, fs, smallOpts())
		tx, _ := db.Begin(ctx, TxOptions{})
		if err := tx.CreateKeyspace("users"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Keyspace("users").Put([]byte("alice"), []byte("1")); err != nil {
			t.Fatal(err)
		}
		if err := tx.Prepare("g1"); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	get := func(db *DB, ks, key string) (string, error) {
		var v []byte
		err := db.View(ctx, func(tx *Tx) (err error) {
			v, err = tx.Keyspace(ks).Get([]byte(key))
			return err
		})
		return string(v), err
	}

	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "close", true: "crash"}[crash]
		t.Run("create/commit/"+name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			prepareCreate(t, fs)
			if crash {
				fs.Crash(vfs.CrashOptions{Seed: 1})
			}
			for round := range 2 { // the second Open runs the sweep again, before the decision
				db := openMem(t, fs, smallOpts())
				if _, err := get(db, "users", "alice"); !errors.Is(err, ErrNoKeyspace) {
					t.Fatalf("round %d: undecided create visible: %v", round, err)
				}
				db.Close()
			}
			db := openMem(t, fs, smallOpts())
			if err := db.CommitPrepared("g1"); err != nil {
				t.Fatal(err)
			}
			if v, err := get(db, "users", "alice"); err != nil || v != "1" {
				t.Fatalf("after CommitPrepared: %q, %v", v, err)
			}
			db.Close()
			db = openMem(t, fs, smallOpts())
			defer db.Close()
			if v, err := get(db, "users", "alice"); err != nil || v != "1" {
				t.Fatalf("after CommitPrepared and reopen: %q, %v", v, err)
			}
			if r := db.Check(); r != nil {
				t.Fatal(r)
			}
		})
	}
	t.Run("create/rollback", func(t *testing.T) {
		fs := vfs.NewMemFS()
		prepareCreate(t, fs)
		db := openMem(t, fs, smallOpts())
		if err := db.RollbackPrepared("g1"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		db = openMem(t, fs, smallOpts()) // the sweep removes the files now
		defer db.Close()
		if _, err := get(db, "users", "alice"); !errors.Is(err, ErrNoKeyspace) {
			t.Fatalf("rolled-back create visible: %v", err)
		}
		if names, _ := fs.List("/db/base"); len(names) > 6 { // 1..4 plus their FSM files
			t.Fatalf("files of the rolled-back keyspace left: %v", names)
		}
	})
	for _, commit := range []bool{false, true} {
		t.Run("drop/"+map[bool]string{false: "rollback", true: "commit"}[commit], func(t *testing.T) {
			fs := vfs.NewMemFS()
			db := openMem(t, fs, smallOpts())
			if err := db.CreateKeyspace("users"); err != nil {
				t.Fatal(err)
			}
			db.Update(ctx, func(tx *Tx) error { return tx.Keyspace("users").Put([]byte("alice"), []byte("1")) })
			tx, _ := db.Begin(ctx, TxOptions{})
			if err := tx.DropKeyspace("users"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Prepare("g2"); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db = openMem(t, fs, smallOpts())
			if v, err := get(db, "users", "alice"); err != nil || v != "1" {
				t.Fatalf("keyspace with an undecided drop: %q, %v", v, err)
			}
			if commit {
				err := db.CommitPrepared("g2")
				if err != nil {
					t.Fatal(err)
				}
			} else if err := db.RollbackPrepared("g2"); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db = openMem(t, fs, smallOpts())
			defer db.Close()
			v, err := get(db, "users", "alice")
			if commit && !errors.Is(err, ErrNoKeyspace) {
				t.Fatalf("dropped keyspace still there: %q, %v", v, err)
			}
			if !commit && (err != nil || v != "1") {
				t.Fatalf("after a rolled-back drop: %q, %v", v, err)
			}
		})
	}
}
