package txn

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// TestCLOGSyncFailureKeepsRedoPoint is defect 5 of issue 11 end to end: a
// commit whose CLOG page failed to sync at one checkpoint must not be
// skipped by the replay after the next one. The checkpoint hook fails from
// the failure on, so the redo point stays before the commit record, and
// recovery after a power loss replays it.
func TestCLOGSyncFailureKeepsRedoPoint(t *testing.T) {
	fs := vfs.NewMemFS()
	l, m := openManager(t, fs, walConfig())
	tx, x := beginWriter(t, m)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	fs.InjectError(vfs.Injection{Op: vfs.OpSync, Path: testDir + "/clog/"}) // once
	if err := l.Checkpoint(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Checkpoint with a failing CLOG fsync = %v, want EIO", err)
	}
	if err := l.Checkpoint(); !errors.Is(err, syscall.EIO) || !errors.Is(err, base.ErrStopped) {
		t.Errorf("Checkpoint after a failed CLOG fsync = %v, want ErrStopped wrapping EIO", err)
	}
	if err := m.Err(); !errors.Is(err, base.ErrStopped) || !errors.Is(err, syscall.EIO) {
		t.Errorf("Manager.Err() = %v, want ErrStopped wrapping EIO", err)
	}
	c := fs.Clone()
	c.Crash(vfs.CrashOptions{})
	l.Close()

	l, m = openManager(t, c, walConfig())
	defer l.Close()
	if st, err := m.Status(x); err != nil || st != Committed {
		t.Fatalf("acknowledged commit %d is %v (%v) after the crash", x, st, err)
	}
}

// TestHaltReleasesRowWaiter: a transaction waiting for another's row lock
// is released when the engine's Halt stops, and from then on every
// Manager call that would do I/O returns the stop's error without doing
// any; Rollback still ends transactions, releasing their locks.
func TestHaltReleasesRowWaiter(t *testing.T) {
	fs := vfs.NewMemFS()
	h := base.NewHalt()
	l, m := openManagerConfig(t, fs, walConfig(), Config{Halt: h})
	defer l.Close()
	holder, hx := beginWriter(t, m)
	prep, _ := beginWriter(t, m)
	if err := prep.Prepare("g1"); err != nil {
		t.Fatal(err)
	}
	waiter, waited := startWaiter(t, m, hx)
	cause := errors.New("WAL fsync failed")
	go h.Stop(cause)
	select {
	case err := <-waited:
		if !errors.Is(err, base.ErrStopped) || !errors.Is(err, cause) {
			t.Fatalf("waiter released with %v, want ErrStopped wrapping the cause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not released by the halt")
	}

	// No I/O from here on: the WAL's counters of inserts, writes and
	// syncs stay (its background segment creation is not ours), and the
	// CLOG's files fail every operation, so a call that tried would return
	// that failure instead of the stop.
	walBefore, clogBefore := l.Stats(), m.CLOG().Stats()
	clogBroken := errors.New("CLOG I/O after the halt")
	for _, op := range []vfs.Op{vfs.OpRead, vfs.OpWrite, vfs.OpSync, vfs.OpSyncDir, vfs.OpCreate, vfs.OpRemove, vfs.OpRename, vfs.OpTruncate} {
		fs.InjectError(vfs.Injection{Op: op, Path: testDir + "/clog/", Persistent: true, Err: clogBroken})
	}
	fs.InjectError(vfs.Injection{Op: vfs.OpSyncDir, Path: testDir + "/clog", Persistent: true, Err: clogBroken})
	isStop := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, base.ErrStopped) || !errors.Is(err, cause) {
			t.Fatalf("%s after the halt = %v, want ErrStopped wrapping the cause", what, err)
		}
	}
	fresh := m.Begin()
	_, err := fresh.WriteXID()
	isStop("WriteXID", err)
	isStop("Wait", fresh.Wait(context.Background(), hx))
	isStop("Prepare", m.Begin().Prepare("g2"))
	isStop("CommitPrepared", m.CommitPrepared("g1"))
	isStop("RollbackPrepared", m.RollbackPrepared("g1"))
	isStop("TruncateCLOG", m.TruncateCLOG(FirstNormalXID))
	isStop("Commit", waiter.Commit())
	if err := waiter.Rollback(); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Rollback after a refused Commit = %v, want ErrTxDone (Commit rolled back)", err)
	}
	isStop("Checkpoint", l.Checkpoint())
	if err := holder.Rollback(); err != nil {
		t.Fatalf("Rollback after the halt: %v", err)
	}
	if err := fresh.Rollback(); err != nil {
		t.Fatalf("Rollback of a transaction without xid after the halt: %v", err)
	}
	walAfter, clogAfter := l.Stats(), m.CLOG().Stats()
	if walAfter.Records != walBefore.Records || walAfter.Writes != walBefore.Writes || walAfter.Syncs != walBefore.Syncs {
		t.Fatalf("WAL I/O after the halt: before %+v, after %+v", walBefore, walAfter)
	}
	if clogAfter.Reads != clogBefore.Reads || clogAfter.Writes != clogBefore.Writes || clogAfter.Truncates != clogBefore.Truncates {
		t.Fatalf("CLOG I/O after the halt: before %+v, after %+v", clogBefore, clogAfter)
	}
	if m.locks.Held(hx) {
		t.Fatal("the rolled-back holder still holds its lock")
	}
	if st, _ := m.Status(hx); st != Aborted {
		t.Fatalf("rolled-back holder is %v", st)
	}
	if got := m.Prepared(); len(got) != 1 {
		t.Fatalf("prepared after a refused CommitPrepared: %v, want g1 still", got)
	}
}

// TestCommitFlushFailureReleasesWaiters is defect 6 of issue 11 for txn,
// with a real WAL over the in-memory FS: the fsync of a commit record
// fails. The commit's outcome is unknown (the record may be on disk), so
// its xid is not marked aborted and keeps its lock; but the engine stops,
// so the transaction waiting for that lock is released instead of hanging,
// and so is every later one. Recovery then decides: the record was never
// synced, so the transaction aborted.
func TestCommitFlushFailureReleasesWaiters(t *testing.T) {
	fs := vfs.NewMemFS()
	l, m := openManager(t, fs, walConfig())
	committer, cx := beginWriter(t, m)
	waiter, waited := startWaiter(t, m, cx)
	fs.InjectError(vfs.Injection{Op: vfs.OpSync, Path: testDir + "/wal/", Persistent: true})
	err := committer.Commit()
	if !errors.Is(err, base.ErrStopped) || !errors.Is(err, syscall.EIO) {
		t.Errorf("Commit with a failing WAL fsync = %v, want ErrStopped wrapping EIO", err)
	}
	select {
	case err := <-waited:
		if !errors.Is(err, base.ErrStopped) {
			t.Fatalf("waiter released with %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter for a transaction whose commit flush failed hangs")
	}
	if st, _ := m.Status(cx); st != InProgress {
		t.Fatalf("xid %d whose commit's outcome is unknown is %v in the CLOG, want in progress", cx, st)
	}
	if !m.locks.Held(cx) {
		t.Fatal("xid whose commit's outcome is unknown let go of its lock")
	}
	if err := committer.Rollback(); !errors.Is(err, base.ErrStopped) {
		t.Fatalf("Rollback after the failed commit = %v, want the stop error", err)
	}
	if err := m.Begin().Wait(context.Background(), cx); !errors.Is(err, base.ErrStopped) {
		t.Fatalf("a later Wait = %v, want ErrStopped at once", err)
	}
	if err := waiter.Rollback(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs after a failed commit flush")
	}

	c := fs.Clone()
	c.ClearInjections()
	c.Crash(vfs.CrashOptions{})
	l, m = openManager(t, c, walConfig())
	defer l.Close()
	if st, _ := m.Status(cx); st != Aborted {
		t.Fatalf("after recovery xid %d, whose commit record never synced, is %v, want aborted", cx, st)
	}
}

// TestCLOGFailureAtEndStops: when a committer's CLOG update fails after
// its commit record is durable (the page had been evicted and cannot be
// read back), the transaction leaves with no outcome in memory; that
// stops the engine, so its waiter gets the stop error rather than finding
// a running xid that holds no lock, and recovery gives it its outcome.
func TestCLOGFailureAtEndStops(t *testing.T) {
	fs := vfs.NewMemFS()
	l, m := openManagerConfig(t, fs, walConfig(), Config{CLOGBuffers: 2})
	holder, hx := beginWriter(t, m)
	waiter, waited := startWaiter(t, m, hx)
	// Evict hx's page (it is written out), then make CLOG reads fail.
	for _, p := range []base.XID{3, 4} {
		if _, err := m.Status(p * xidsPerPage); err != nil {
			t.Fatal(err)
		}
	}
	fs.InjectError(vfs.Injection{Op: vfs.OpRead, Path: testDir + "/clog/", Persistent: true})
	if err := holder.Commit(); !errors.Is(err, base.ErrStopped) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Commit whose CLOG update fails = %v, want ErrStopped wrapping EIO", err)
	}
	select {
	case err := <-waited:
		if !errors.Is(err, base.ErrStopped) {
			t.Fatalf("waiter released with %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter hangs")
	}
	waiter.Rollback()
	c := fs.Clone()
	l.Close()
	c.ClearInjections()
	c.Crash(vfs.CrashOptions{})
	l, m = openManager(t, c, walConfig())
	defer l.Close()
	if st, err := m.Status(hx); err != nil || st != Committed {
		t.Fatalf("after recovery the durable commit %d is %v (%v)", hx, st, err)
	}
}

// startWaiter starts a transaction that waits for holder's xid lock in
// its own goroutine and returns it once it is queued, with a channel that
// delivers Wait's result.
func startWaiter(t *testing.T, m *Manager, holder base.XID) (*Tx, <-chan error) {
	t.Helper()
	waiter, _ := beginWriter(t, m)
	waited := make(chan error, 1)
	go func() { waited <- waiter.Wait(context.Background(), holder) }()
	for m.locks.Stats().Waiting == 0 {
		time.Sleep(time.Millisecond)
	}
	return waiter, waited
}
