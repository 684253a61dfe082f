package txn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/xlog"
)

const testDir = "/db"

func walConfig() xlog.Config {
	return xlog.Config{WALBuffers: 64 << 10, SegmentSize: 256 << 10, CheckpointTimeout: time.Hour, MaxWALSize: 1 << 40}
}

// openManager opens (and recovers) a WAL and a Manager on fs.
func openManager(t testing.TB, fs vfs.FS, wcfg xlog.Config) (*xlog.Log, *Manager) {
	t.Helper()
	return openManagerConfig(t, fs, wcfg, Config{})
}

// openManagerConfig is openManager with a Manager configuration.
func openManagerConfig(t testing.TB, fs vfs.FS, wcfg xlog.Config, cfg Config) (*xlog.Log, *Manager) {
	t.Helper()
	l, err := xlog.Open(fs, testDir, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(fs, testDir, l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Recover(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recovered(res); err != nil {
		t.Fatal(err)
	}
	return l, m
}

// beginWriter begins a transaction on m and assigns it its xid.
func beginWriter(t testing.TB, m *Manager) (*Tx, base.XID) {
	t.Helper()
	tx := m.Begin()
	x, err := tx.WriteXID()
	if err != nil {
		t.Fatal(err)
	}
	return tx, x
}

// TestCrashKeepsDurableCommits runs transactions from several goroutines,
// crashes the file system at a random moment, and checks after recovery:
// every transaction whose Commit returned is committed, every one still
// running is aborted, and no xid is handed out twice.
func TestCrashKeepsDurableCommits(t *testing.T) {
	seeds := 60
	if testing.Short() || raceEnabled {
		seeds = 10
	}
	base0 := testSeed(t)
	for s := range uint64(seeds) {
		seed := base0 + s
		t.Run(fmt.Sprint(seed), func(t *testing.T) { crashOnce(t, seed) })
	}
}

func crashOnce(t *testing.T, seed uint64) {
	fs := vfs.NewMemFS()
	r := rand.New(rand.NewPCG(seed, 7))
	var (
		mu        sync.Mutex
		committed = map[base.XID]bool{} // acknowledged
		aborted   = map[base.XID]bool{}
		running   = map[base.XID]bool{}
		maxAlloc  base.XID
	)
	for round := range 3 {
		l, m := openManager(t, fs, walConfig())
		for x := range committed {
			if st, _ := m.Status(x); st != Committed {
				t.Fatalf("round %d: acknowledged commit %d is %v", round, x, st)
			}
		}
		for x := range aborted {
			if st, _ := m.Status(x); st != Aborted {
				t.Fatalf("round %d: rolled-back %d is %v", round, x, st)
			}
		}
		for x := range running {
			if st, _ := m.Status(x); st != Aborted && st != Committed {
				t.Fatalf("round %d: xid %d running at the crash is %v, want aborted (or committed)", round, x, st)
			}
		}
		clear(running)
		var crashed *vfs.MemFS
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				rr := rand.New(rand.NewPCG(seed, uint64(round*10+w)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					tx := m.Begin()
					x, err := tx.WriteXID()
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if crashed == nil {
						running[x] = true
					}
					mu.Unlock()
					if rr.IntN(4) == 0 {
						err := tx.Rollback()
						mu.Lock()
						if crashed == nil && err == nil {
							aborted[x] = true
							delete(running, x)
						}
						mu.Unlock()
						continue
					}
					err = tx.Commit()
					mu.Lock()
					if crashed == nil && err == nil {
						committed[x] = true
						delete(running, x)
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(1+r.IntN(5)) * time.Millisecond)
		if r.IntN(2) == 0 {
			if err := l.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
		// The power fails: the disk is what it is now, work goes on a bit.
		mu.Lock()
		crashed = fs.Clone()
		for x := range running {
			maxAlloc = max(maxAlloc, x)
		}
		for x := range committed {
			maxAlloc = max(maxAlloc, x)
		}
		for x := range aborted {
			maxAlloc = max(maxAlloc, x)
		}
		mu.Unlock()
		close(stop)
		wg.Wait()
		l.Close()
		crashed.Crash(vfs.CrashOptions{Seed: int64(seed) + int64(round), KeepUnsynced: 0.5, TearProbability: 0.5})
		fs = crashed

		// No xid is handed out twice: the first one after recovery is
		// above everything handed out before.
		l2, m2 := openManager(t, fs.Clone(), walConfig())
		tx := m2.Begin()
		x, err := tx.WriteXID()
		if err != nil {
			t.Fatal(err)
		}
		if x <= maxAlloc {
			t.Fatalf("round %d: xid %d handed out again after restart (had reached %d)", round, x, maxAlloc)
		}
		tx.Rollback()
		l2.Close()
	}
}

// TestPreparedSurvivesCrash: a prepared transaction comes back after a
// crash as in progress, holding its xid lock, whether its PREPARE record
// is replayed or lies before the last checkpoint; then CommitPrepared and
// RollbackPrepared decide it.
func TestPreparedSurvivesCrash(t *testing.T) {
	for _, checkpointAfter := range []bool{false, true} {
		t.Run(fmt.Sprintf("checkpoint=%v", checkpointAfter), func(t *testing.T) {
			fs := vfs.NewMemFS()
			l, m := openManager(t, fs, walConfig())
			var xids []base.XID
			for _, gid := range []string{"alpha", "beta"} {
				tx := m.Begin()
				if _, err := tx.Savepoint(); err != nil {
					t.Fatal(err)
				}
				sub, err := tx.WriteXID() // a subtransaction's write
				if err != nil {
					t.Fatal(err)
				}
				if err := tx.Prepare(gid); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); !errors.Is(err, ErrTxDone) {
					t.Fatalf("Commit after Prepare: %v", err)
				}
				xids = append(xids, tx.XID(), sub)
			}
			if err := m.Begin().Prepare("alpha"); !errors.Is(err, ErrDuplicateGID) {
				t.Fatalf("duplicate gid: %v", err)
			}
			if checkpointAfter {
				if err := l.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
			c := fs.Clone()
			l.Close()
			c.Crash(vfs.CrashOptions{})

			l, m = openManager(t, c, walConfig())
			defer l.Close()
			if got := m.Prepared(); len(got) != 2 || got[0] != "alpha" || got[1] != "beta" {
				t.Fatalf("prepared after restart: %v", got)
			}
			for _, x := range xids {
				if st, _ := m.Status(x); st != InProgress {
					t.Fatalf("prepared xid %d is %v after restart", x, st)
				}
				if !m.locks.Held(x) {
					t.Fatalf("prepared xid %d holds no lock", x)
				}
			}
			// A snapshot sees them as running.
			reader := m.Begin()
			var s Snapshot
			reader.Snapshot(&s)
			for _, x := range xids {
				if !s.InProgressAt(x) {
					t.Fatalf("snapshot %+v does not see prepared xid %d as running", s, x)
				}
			}
			reader.Rollback()
			if err := m.CommitPrepared("alpha"); err != nil {
				t.Fatal(err)
			}
			if err := m.RollbackPrepared("beta"); err != nil {
				t.Fatal(err)
			}
			if err := m.CommitPrepared("beta"); !errors.Is(err, ErrUnknownGID) {
				t.Fatalf("second finish: %v", err)
			}
			want := []Status{Committed, Committed, Aborted, Aborted}
			for i, x := range xids {
				if st, _ := m.Status(x); st != want[i] {
					t.Fatalf("xid %d is %v, want %v", x, st, want[i])
				}
				if m.locks.Held(x) {
					t.Fatalf("xid %d still locked", x)
				}
			}
		})
	}
}

func TestSavepointRollback(t *testing.T) {
	fs := vfs.NewMemFS()
	l, m := openManager(t, fs, walConfig())
	defer l.Close()
	tx := m.Begin()
	top, _ := tx.WriteXID()
	sp, _ := tx.Savepoint()
	sub1, _ := tx.WriteXID()
	inner, _ := tx.Savepoint()
	sub2, _ := tx.WriteXID()
	if !(top < sub1 && sub1 < sub2) {
		t.Fatalf("xids %d %d %d not ascending", top, sub1, sub2)
	}
	var s Snapshot
	tx.Snapshot(&s)
	for _, x := range []base.XID{top, sub1, sub2} {
		if !s.IsOwn(x) {
			t.Fatalf("own xid %d not own in snapshot %+v", x, s)
		}
	}
	// Another transaction waiting for sub2 is woken by rolling back inner.
	other := m.Begin()
	done := make(chan error, 1)
	go func() { done <- other.Wait(t.Context(), sub2) }()
	if err := tx.RollbackToSavepoint(inner); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Status(sub2); st != Aborted {
		t.Fatalf("rolled-back subxid is %v", st)
	}
	tx.Snapshot(&s)
	if s.IsOwn(sub2) || !s.IsOwn(sub1) {
		t.Fatalf("after rollback to savepoint, snapshot %+v", s)
	}
	if err := tx.ReleaseSavepoint(sp); err != nil {
		t.Fatal(err)
	}
	if err := tx.ReleaseSavepoint(sp); !errors.Is(err, ErrNoSavepoint) {
		t.Fatalf("release of a released savepoint: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	want := map[base.XID]Status{top: Committed, sub1: Committed, sub2: Aborted}
	for x, st := range want {
		if got, _ := m.Status(x); got != st {
			t.Fatalf("xid %d is %v, want %v", x, got, st)
		}
	}
	other.Rollback()
	if err := tx.Rollback(); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Rollback after Commit: %v", err)
	}
}

// TestDeadlockBetweenTransactions: two transactions each wait for the
// other's xid; exactly one gets ErrDeadlock.
func TestDeadlockBetweenTransactions(t *testing.T) {
	fs := vfs.NewMemFS()
	l, err := xlog.Open(fs, testDir, walConfig())
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(fs, testDir, l, Config{DeadlockTimeout: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := l.Recover(nil)
	m.Recovered(res)
	defer l.Close()
	a, b := m.Begin(), m.Begin()
	xa, _ := a.WriteXID()
	xb, _ := b.WriteXID()
	errs := make(chan error, 2)
	go func() {
		err := a.Wait(t.Context(), xb)
		if err != nil {
			a.Rollback()
		}
		errs <- err
	}()
	go func() {
		err := b.Wait(t.Context(), xa)
		if err != nil {
			b.Rollback()
		}
		errs <- err
	}()
	e1, e2 := <-errs, <-errs
	if errors.Is(e1, ErrDeadlock) == errors.Is(e2, ErrDeadlock) {
		t.Fatalf("want exactly one ErrDeadlock, got %v and %v", e1, e2)
	}
	if m.Stats().Locks.Deadlocks != 1 {
		t.Fatalf("stats: %+v", m.Stats().Locks)
	}
}

func BenchmarkBeginCommit(b *testing.B) {
	for _, mode := range []struct {
		name string
		sync base.Toggle
		g    int
	}{{"sync=off", base.Off, 1}, {"sync=on/G=1", base.On, 1}, {"sync=on/G=64", base.On, 64}} {
		b.Run(mode.name, func(b *testing.B) {
			cfg := xlog.Config{SynchronousCommit: mode.sync}
			dir := b.TempDir()
			l, err := xlog.Open(vfs.Default, dir, cfg)
			if err != nil {
				b.Fatal(err)
			}
			m, err := NewManager(vfs.Default, dir, l, Config{})
			if err != nil {
				b.Fatal(err)
			}
			res, _ := l.Recover(nil)
			m.Recovered(res)
			defer l.Close()
			var wg sync.WaitGroup
			var n atomic.Int64
			t0 := time.Now()
			b.ResetTimer()
			for range mode.g {
				wg.Go(func() {
					for n.Add(1) <= int64(b.N) {
						tx := m.Begin()
						tx.WriteXID()
						if err := tx.Commit(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "commits/s")
		})
	}
}

func BenchmarkVisible(b *testing.B) {
	s, f := testWorld()
	b.Run("hinted", func(b *testing.B) {
		v := Version{XMin: oldCommit, Mask: XMinCommitted}
		for b.Loop() {
			Visible(v, s, f)
		}
	})
	b.Run("clog", func(b *testing.B) {
		fs := vfs.NewMemFS()
		c, _ := OpenCLOG(fs, "/clog", 4, nil)
		c.SetStatus([]base.XID{oldCommit}, Committed, 0)
		src := clogSource{c}
		v := Version{XMin: oldCommit}
		for b.Loop() {
			Visible(v, s, src)
		}
	})
}

type clogSource struct{ c *CLOG }

func (s clogSource) Status(x base.XID) (Status, error) { return s.c.Status(x) }
func (s clogSource) IsDurable(x base.XID) bool         { return s.c.IsDurable(x, 1<<62) }

// TestConflictWaitOutlastsProcArray pins what a Read Committed writer
// relies on after a WriteConflict: between a committer's CLOG update and
// its leaving the ProcArray, a new snapshot still lists it, and waiting
// for the xid CheckWrite names returns only once it has left. Without
// that wait the writer would retake snapshots in a loop for as long as the
// committer takes (YCSB A with relaxed commits spent most of its CPU so).
func TestConflictWaitOutlastsProcArray(t *testing.T) {
	l, m := openManager(t, vfs.NewMemFS(), walConfig())
	defer l.Close()
	writer, _ := beginWriter(t, m)
	var before Snapshot
	if err := writer.Snapshot(&before); err != nil {
		t.Fatal(err)
	}
	committer, cx := beginWriter(t, m)
	// writer's old snapshot did not see committer at all; make it a row
	// committer deleted after that snapshot was taken.
	before.XIP = append(before.XIP, cx)
	if before.XMax <= cx {
		before.XMax = cx + 1
	}
	inWindow, release := make(chan struct{}), make(chan struct{})
	testHookBeforeEndXID = func(x base.XID) {
		if x == cx {
			close(inWindow)
			<-release
		}
	}
	defer func() { testHookBeforeEndXID = nil }()
	done := make(chan error, 1)
	go func() { done <- committer.Commit() }()
	<-inWindow

	v := Version{XMin: FrozenXID, XMax: cx}
	wv, err := CheckWrite(v, &before, m)
	if err != nil || wv.Check != WriteConflict || wv.Holder != cx {
		t.Fatalf("CheckWrite = %v, wait %d, %v; want conflict with %d", wv.Check, wv.Holder, err, cx)
	}
	var again Snapshot
	if err := writer.Snapshot(&again); err != nil {
		t.Fatal(err)
	}
	if !again.InProgressAt(cx) {
		t.Fatal("a snapshot taken before the committer left the ProcArray does not list it; the window this test is about is gone")
	}
	waited := make(chan error, 1)
	go func() { waited <- writer.Wait(context.Background(), wv.Holder) }()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned (%v) while the committer was still in the ProcArray", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if err := writer.Snapshot(&again); err != nil {
		t.Fatal(err)
	}
	if again.InProgressAt(cx) {
		t.Fatal("after the wait, a new snapshot still lists the committer")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if wv, _ := CheckWrite(v, &again, m); wv.Check != WriteOK {
		t.Fatalf("after the wait CheckWrite = %v, want ok", wv.Check)
	}
	writer.Rollback()
}

// A rollback whose abort record lies before a checkpoint's redo point but
// whose CLOG update comes after the checkpoint wrote the CLOG must still
// come back aborted after a crash: the checkpoint's oldest running xid is
// taken before the CLOG write, so recovery looks at it. (Taken after, the
// xid had left the ProcArray, recovery skipped it, and it stayed "in
// progress" for ever; TestCrashKeepsDurableCommits met this about once in
// a hundred runs under -race.)
func TestRollbackAcrossCheckpointStaysAborted(t *testing.T) {
	fs := vfs.NewMemFS()
	l, m := openManager(t, fs, walConfig())
	tx, x := beginWriter(t, m)
	atEnd, release := make(chan struct{}), make(chan struct{})
	testHookBeforeEnd = func(xid base.XID) {
		if xid == x {
			close(atEnd)
			<-release
		}
	}
	defer func() { testHookBeforeEnd, testHookAfterCLOGCheckpoint = nil, nil }()
	rolledBack := make(chan error, 1)
	go func() { rolledBack <- tx.Rollback() }()
	<-atEnd // the abort record is in; the CLOG does not say aborted yet
	testHookAfterCLOGCheckpoint = func() {
		close(release) // the rollback finishes between the CLOG write and the rest
		if err := <-rolledBack; err != nil {
			t.Error(err)
		}
	}
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	testHookAfterCLOGCheckpoint = nil
	crashed := fs.Clone()
	l.Close()
	crashed.Crash(vfs.CrashOptions{Seed: 1})
	_, m2 := openManager(t, crashed, walConfig())
	if st, _ := m2.Status(x); st != Aborted {
		t.Fatalf("xid %d rolled back across a checkpoint is %v after a crash, want aborted", x, st)
	}
}

// An xid taken from the counter but not yet published in the ProcArray
// when a checkpoint computes its oldest running xid must still be at or
// above that oldest: otherwise a crash leaves it "in progress" for ever,
// because recovery only marks what it finds from oldest up. (The
// checkpoint used Running, which skips procs being given an xid; a writer
// in that window, slowed by the first xid of a CLOG page, made
// TestCrashKeepsDurableCommits fail at xid 32769.)
func TestXIDBeingAssignedAtCheckpointAbortsAfterCrash(t *testing.T) {
	fs := vfs.NewMemFS()
	l, m := openManager(t, fs, walConfig())
	var target base.XID
	checkpointed := make(chan error, 1)
	testHookXIDTaken = func(x base.XID) {
		target = x
		go func() { checkpointed <- l.Checkpoint() }()
		// A checkpoint that does not wait for this xid finishes now.
		select {
		case err := <-checkpointed:
			checkpointed <- err
		case <-time.After(50 * time.Millisecond):
		}
	}
	tx := m.Begin()
	x, err := tx.WriteXID()
	testHookXIDTaken = nil
	if err != nil {
		t.Fatal(err)
	}
	if x != target {
		t.Fatalf("hook saw xid %d, WriteXID returned %d", target, x)
	}
	if err := <-checkpointed; err != nil {
		t.Fatal(err)
	}
	// x is running at the crash; its CLOG page is durable (the checkpoint
	// wrote it), so only recovery can mark it aborted.
	crashed := fs.Clone()
	l.Close()
	crashed.Crash(vfs.CrashOptions{Seed: 1})
	_, m2 := openManager(t, crashed, walConfig())
	if st, _ := m2.Status(x); st != Aborted {
		t.Fatalf("xid %d being assigned at a checkpoint is %v after a crash, want aborted", x, st)
	}
}
