package table

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// env is one table over a WAL, a buffer pool and a transaction manager on
// an in-memory file system, wired as kv wires them.
type env struct {
	tb   *Table
	txm  *txn.Manager
	wal  *xlog.Log
	pool *pagecache.Pool
}

func openEnv(t *testing.T) *env {
	t.Helper()
	fsys, dir := vfs.NewMemFS(), "/db"
	wal, err := xlog.Open(fsys, dir, xlog.Config{SegmentSize: 1 << 20, WALBuffers: 256 << 10, CheckpointTimeout: time.Hour, MaxWALSize: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	smgr, err := pagecache.OpenStorage(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pagecache.NewPool(smgr, pagecache.Config{SharedBuffers: 64 * pagecache.BlockSize, FlushWAL: wal.Flush})
	if err != nil {
		t.Fatal(err)
	}
	txm, err := txn.NewManager(fsys, dir, wal, txn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := RegisterRedo(wal); err != nil {
		t.Fatal(err)
	}
	res, err := wal.Recover(pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := txm.Recovered(res); err != nil {
		t.Fatal(err)
	}
	tb, err := Open(Config{Pool: pool, WAL: wal, FS: fsys, Dir: dir, Status: txm}, 16, 17)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{tb: tb, txm: txm, wal: wal, pool: pool}
	t.Cleanup(func() {
		tb.Close()
		if err := wal.Close(); err != nil {
			t.Error(err)
		}
		pool.Close()
	})
	return e
}

// session is a transaction with kv's snapshot rule: Repeatable Read keeps
// its first snapshot, Read Committed takes one per call.
type session struct {
	t        *testing.T
	tx       *txn.Tx
	snap     txn.Snapshot
	haveSnap bool
	rc       bool
}

func (e *env) begin(t *testing.T, readCommitted bool) *session {
	return &session{t: t, tx: e.txm.Begin(), rc: readCommitted}
}

func (s *session) snapshot() (*txn.Snapshot, error) {
	if !s.haveSnap || s.rc {
		if err := s.tx.Snapshot(&s.snap); err != nil {
			return nil, err
		}
		s.haveSnap = true
	} else {
		s.tx.SetOwn(&s.snap)
	}
	return &s.snap, nil
}

// writer is s for a write. Its context ends a write that loops or waits
// for too long, so a broken rule fails the test instead of hanging it.
func (s *session) writer() *Writer {
	ctx, cancel := context.WithTimeout(s.t.Context(), 10*time.Second)
	s.t.Cleanup(cancel)
	return &Writer{Ctx: ctx, Tx: s.tx, Snapshot: s.snapshot, ReadCommitted: s.rc}
}

// get reads key, "" with ok false if the session sees no version.
func (s *session) get(tb *Table, key string) (string, bool) {
	s.t.Helper()
	snap, err := s.snapshot()
	if err != nil {
		s.t.Fatal(err)
	}
	v, ok, err := tb.Get([]byte(key), snap, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(v), ok
}

func (s *session) put(tb *Table, key, value string) Change {
	s.t.Helper()
	c, err := tb.Put(s.writer(), []byte(key), []byte(value))
	if err != nil {
		s.t.Fatalf("put %s: %v", key, err)
	}
	return c
}

func (s *session) commit() {
	s.t.Helper()
	if err := s.tx.Commit(); err != nil {
		s.t.Fatal(err)
	}
}

func TestPutGetDeleteLockRow(t *testing.T) {
	e := openEnv(t)
	s := e.begin(t, false)
	if c := s.put(e.tb, "k", "v1"); c != (Change{Versions: 1, Inserted: true}) {
		t.Fatalf("first put: %+v, want one version inserted", c)
	}
	if v, ok := s.get(e.tb, "k"); !ok || v != "v1" {
		t.Fatalf("own write: %q, %v", v, ok)
	}
	other := e.begin(t, false)
	if _, ok := other.get(e.tb, "k"); ok {
		t.Fatal("uncommitted write visible to another transaction")
	}
	other.tx.Rollback()
	s.commit()

	s = e.begin(t, false)
	if c := s.put(e.tb, "k", "v2"); c != (Change{Versions: 1, Updated: true}) {
		t.Fatalf("update: %+v, want one version updated", c)
	}
	s.commit()

	s = e.begin(t, false)
	v, found, err := e.tb.LockRow(s.writer(), []byte("k"))
	if err != nil || !found || string(v) != "v2" {
		t.Fatalf("LockRow: %q, %v, %v; want v2", v, found, err)
	}
	if deleted, err := e.tb.Delete(s.writer(), []byte("k")); err != nil || !deleted {
		t.Fatalf("Delete of a locked-by-us row: %v, %v", deleted, err)
	}
	if deleted, err := e.tb.Delete(s.writer(), []byte("k")); err != nil || deleted {
		t.Fatalf("second Delete: %v, %v; want nothing deleted", deleted, err)
	}
	if _, found, err := e.tb.LockRow(s.writer(), []byte("k")); err != nil || found {
		t.Fatalf("LockRow of a deleted row: %v, %v; want not found", found, err)
	}
	s.commit()
	s = e.begin(t, false)
	if _, ok := s.get(e.tb, "k"); ok {
		t.Fatal("deleted row still visible")
	}
	s.tx.Rollback()
}

// TestConflictFollowsIsolation: a row changed and committed after the
// writer's snapshot is ErrSerialization for a Repeatable Read writer and
// an update of the newest version for a Read Committed one.
func TestConflictFollowsIsolation(t *testing.T) {
	for _, rc := range []bool{false, true} {
		e := openEnv(t)
		s := e.begin(t, false)
		s.put(e.tb, "k", "v1")
		s.commit()

		w := e.begin(t, rc)
		if v, _ := w.get(e.tb, "k"); v != "v1" {
			t.Fatalf("read: %q", v)
		}
		s = e.begin(t, false)
		s.put(e.tb, "k", "v2")
		s.commit()

		_, err := e.tb.Put(w.writer(), []byte("k"), []byte("v3"))
		if !rc {
			if !errors.Is(err, ErrSerialization) {
				t.Fatalf("Repeatable Read write over a later commit: %v, want ErrSerialization", err)
			}
			w.tx.Rollback()
			continue
		}
		if err != nil {
			t.Fatalf("Read Committed write over a later commit: %v", err)
		}
		w.commit()
		s = e.begin(t, false)
		if v, _ := s.get(e.tb, "k"); v != "v3" {
			t.Fatalf("after the Read Committed write: %q, want v3", v)
		}
		s.tx.Rollback()
	}
}

func TestScanAndForEachNewest(t *testing.T) {
	e := openEnv(t)
	s := e.begin(t, false)
	for _, k := range []string{"c", "a", "b"} {
		s.put(e.tb, k, "v"+k)
	}
	s.commit()
	aborted := e.begin(t, false)
	aborted.put(e.tb, "aa", "gone")
	aborted.put(e.tb, "b", "gone")
	aborted.tx.Rollback()

	s = e.begin(t, false)
	snap, err := s.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	it := e.tb.Scan(nil, nil, true)
	var got []string
	for it.Next(snap) {
		got = append(got, string(it.Key())+"="+string(it.Value()))
	}
	it.Close()
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if want := "[c=vc b=vb a=va]"; fmt.Sprint(got) != want {
		t.Fatalf("reverse scan: %v, want %s", got, want)
	}
	s.tx.Rollback()

	got = got[:0]
	err = e.tb.ForEachNewest(func(key []byte, v txn.Version, tid base.TID) error {
		value, err := e.tb.Value(tid)
		got = append(got, string(key)+"="+string(value))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// "aa" has only an aborted version; "b"'s newest non-aborted one is
	// the committed vb.
	if want := "[a=va b=vb c=vc]"; fmt.Sprint(got) != want {
		t.Fatalf("ForEachNewest: %v, want %s", got, want)
	}
}
