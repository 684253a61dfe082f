package xlog

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// within fails the test if f does not return within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// wantStopped checks that err says the log stopped because of cause.
func wantStopped(t *testing.T, what string, err, cause error) {
	t.Helper()
	if !errors.Is(err, base.ErrStopped) || !errors.Is(err, cause) {
		t.Fatalf("%s: %v, want an error matching base.ErrStopped and %v", what, err, cause)
	}
}

// TestHaltOnWALFailure: a failed WAL fsync or write stops Config.Halt with
// the cause; every later call fails with it; Close returns promptly and
// writes no shutdown checkpoint.
func TestHaltOnWALFailure(t *testing.T) {
	for _, op := range []vfs.Op{vfs.OpSync, vfs.OpWrite} {
		want := ErrWALSyncFailed
		if op == vfs.OpWrite {
			want = ErrWALWriteFailed
		}
		fs := vfs.NewMemFS()
		halt := base.NewHalt()
		cfg := smallConfig()
		cfg.Halt = halt
		l, _, _ := openLog(t, fs, cfg, nil)
		_, end := insertPayload(t, l, 1, []byte("durable"))
		if err := l.Flush(end); err != nil {
			t.Fatal(err)
		}
		fs.InjectError(vfs.Injection{Op: op, Path: testDir + "/wal/" + segmentName(int64(end)/l.SegmentSize())})
		_, end = insertPayload(t, l, 1, []byte("lost"))
		wantStopped(t, "Flush", l.Flush(end), want)
		select {
		case <-halt.Done():
		default:
			t.Fatal("the halt was not stopped")
		}
		wantStopped(t, "Halt.Err", halt.Err(), want)
		fs.ClearInjections()
		_, _, err := l.Insert(NewRecord(rmgrTest, 0, 1))
		wantStopped(t, "Insert", err, want)
		wantStopped(t, "Flush again", l.Flush(end), want)
		wantStopped(t, "Checkpoint", l.Checkpoint(), want)
		ctl := mustRead(t, fs, testDir+"/control")
		within(t, 5*time.Second, "Close", func() { wantStopped(t, "Close", l.Close(), want) })
		if !bytes.Equal(ctl, mustRead(t, fs, testDir+"/control")) {
			t.Fatalf("%v: Close of a stopped log wrote the control file", op)
		}
	}
}

// TestHaltFromElsewhere: once another subsystem has stopped the engine (a
// data file's fsync failed, say), the log refuses checkpoints, inserts and
// flushes with the halt's error, its background goroutines do no more I/O,
// and Close writes no checkpoint.
func TestHaltFromElsewhere(t *testing.T) {
	fs := vfs.NewMemFS()
	halt := base.NewHalt()
	cfg := smallConfig()
	cfg.Halt = halt
	cfg.WALWriterDelay = time.Millisecond
	// No timed checkpoint: one between the insert below and the halt
	// would flush the record the test needs unflushed. The checkpointer
	// is asked for one after the halt instead.
	cfg.CheckpointTimeout = time.Hour
	l, _, _ := openLog(t, fs, cfg, nil)
	writeAcked(t, l, 3, 100)
	_, pending := insertPayload(t, l, 1, []byte("not flushed"))
	// Let work the writes started finish (the WAL writer creating the
	// next segment ahead, raising must-reach): I/O begun before the halt
	// may end after it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		st := fs.Stats()
		time.Sleep(20 * time.Millisecond)
		if fs.Stats() == st {
			break
		}
	}
	ctl := mustRead(t, fs, testDir+"/control")
	before := fs.Stats()

	cause := errors.New("data file fsync failed")
	halt.Stop(cause)
	if err := l.Checkpoint(); err != halt.Err() {
		t.Fatalf("Checkpoint after a halt: %v, want %v", err, halt.Err())
	}
	_, _, err := l.Insert(NewRecord(rmgrTest, 0, 1))
	wantStopped(t, "Insert", err, cause)
	wantStopped(t, "Flush", l.Flush(pending), cause)
	l.SetAsyncLSN(pending) // the WAL writer must leave it alone
	l.RequestCheckpoint()  // and the checkpointer this
	time.Sleep(50 * time.Millisecond)
	if st := fs.Stats(); st.Writes != before.Writes || st.Syncs != before.Syncs {
		t.Fatalf("I/O after the halt: %+v, before %+v", st, before)
	}
	if l.FlushedLSN() >= pending {
		t.Fatal("the WAL writer flushed after the halt")
	}
	within(t, 5*time.Second, "Close", func() { wantStopped(t, "Close", l.Close(), cause) })
	if !bytes.Equal(ctl, mustRead(t, fs, testDir+"/control")) {
		t.Fatal("the control file changed after the halt")
	}
}

// TestHaltDuringCheckpoint: a halt that comes while a checkpoint writes
// buffers keeps it from logging its record and writing the control file.
func TestHaltDuringCheckpoint(t *testing.T) {
	fs := vfs.NewMemFS()
	halt := base.NewHalt()
	cfg := smallConfig()
	cfg.Halt = halt
	l, _, _ := openLog(t, fs, cfg, nil)
	writeAcked(t, l, 3, 100)
	cause := errors.New("clog fsync failed")
	l.RegisterCheckpointHook("clog", func(base.LSN, *CheckpointData) error {
		halt.Stop(cause) // another goroutine's failure, seen after the hook
		return nil
	})
	ctl := mustRead(t, fs, testDir+"/control")
	end := l.InsertLSN()
	wantStopped(t, "Checkpoint", l.Checkpoint(), cause)
	if l.InsertLSN() != end {
		t.Fatal("a checkpoint record was inserted after the halt")
	}
	if !bytes.Equal(ctl, mustRead(t, fs, testDir+"/control")) {
		t.Fatal("the control file changed after the halt")
	}
	l.Close()
}

// TestFlushWaitersReleased: when the group-commit leader's fsync fails,
// every Flush waiting for it returns the error at once.
func TestFlushWaitersReleased(t *testing.T) {
	const n = 16
	var arrived atomic.Int32
	clock := &gateClock{gate: func() {
		for arrived.Load() < n { // the leader sleeps until all have come
			time.Sleep(time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond) // and are waiting for it
	}}
	fs := vfs.NewMemFS()
	cfg := smallConfig()
	cfg.Clock = clock
	cfg.CommitDelay = time.Millisecond
	cfg.Halt = base.NewHalt()
	l, _, _ := openLog(t, fs, cfg, nil)
	fs.InjectError(vfs.Injection{Op: vfs.OpSync, Path: testDir + "/wal/", Persistent: true})
	errs := make([]error, n)
	within(t, 10*time.Second, "the flushes", func() {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, end := insertPayload(t, l, base.XID(i+1), bytes.Repeat([]byte{1}, 100))
				arrived.Add(1)
				errs[i] = l.Flush(end)
			})
		}
		wg.Wait()
	})
	for i, err := range errs {
		wantStopped(t, "Flush "+string(rune('a'+i)), err, ErrWALSyncFailed)
	}
	if s := l.Stats().Syncs; s != 1 {
		t.Fatalf("%d fsyncs tried, want the leader's alone", s)
	}
	within(t, 5*time.Second, "Close", func() { l.Close() })
}

// TestAbandon: Abandon releases the log without a checkpoint or a control
// file write, and the next Open recovers from the WAL.
func TestAbandon(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	recs := writeAcked(t, l, 5, 100)
	ctl := mustRead(t, fs, testDir+"/control")
	seg := walFiles(t, fs)[segmentName(1)] // the WAL writer may be creating segment 2
	if err := l.Abandon(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ctl, mustRead(t, fs, testDir+"/control")) || !bytes.Equal(seg, walFiles(t, fs)[segmentName(1)]) {
		t.Fatal("Abandon wrote the control file or the WAL")
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after Abandon: %v", err)
	}
	if _, _, err := l.Insert(NewRecord(rmgrTest, 0, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Insert after Abandon: %v", err)
	}
	l2, c, res := openLog(t, fs, Config{}, nil)
	defer l2.Close()
	if !res.Crashed || len(c.recs) != len(recs) {
		t.Fatalf("after Abandon: crashed %v, %d records replayed", res.Crashed, len(c.recs))
	}

	// An Open whose recovery failed is abandoned the same way.
	fs2 := vfs.NewMemFS()
	l3, _, _ := openLog(t, fs2, smallConfig(), nil)
	recs = writeAcked(t, l3, 5, 100)
	crashed := fs2.Clone()
	l3.Close()
	patchWAL(t, crashed, 64<<10, recs[1].start, 4, 0, true)
	l4, err := Open(crashed, testDir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	l4.RegisterRmgr(rmgrTest, "test", func(*Record, *RedoContext) error { return nil })
	if _, err := l4.Recover(nil); !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("Recover: %v", err)
	}
	ctl = mustRead(t, crashed, testDir+"/control")
	if err := l4.Abandon(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ctl, mustRead(t, crashed, testDir+"/control")) {
		t.Fatal("Abandon after a failed recovery wrote the control file")
	}
}
