package xlog

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// gateClock is a clock whose Sleep (commit_delay) waits for a condition
// instead of for time, so group commit can be tested without timing.
type gateClock struct {
	realClock
	sleeps atomic.Int32
	gate   func()
}

func (c *gateClock) Sleep(time.Duration) {
	c.sleeps.Add(1)
	c.gate()
}

// TestGroupCommit: with commit_delay, the flusher waits while the other
// committers insert; one write and one fsync then cover all of them, and
// the others return from Flush without an fsync of their own.
func TestGroupCommit(t *testing.T) {
	const n = 16
	var inserted atomic.Int32
	clock := &gateClock{gate: func() {
		for inserted.Load() < n {
			time.Sleep(time.Millisecond)
		}
	}}
	cfg := smallConfig()
	cfg.Clock = clock
	cfg.CommitDelay = time.Millisecond
	l, _, _ := openLog(t, vfs.NewMemFS(), cfg, nil)
	defer l.Close()
	l.SetActiveTransactions(func() int { return n })
	before := l.Stats()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, end := insertPayload(t, l, base.XID(i+1), bytes.Repeat([]byte{1}, 100))
			inserted.Add(1)
			if err := l.Flush(end); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	if syncs := st.Syncs - before.Syncs; syncs != 1 {
		t.Fatalf("%d commits took %d fsyncs, want 1", n, syncs)
	}
	if s := clock.sleeps.Load(); s != 1 {
		t.Fatalf("commit_delay slept %d times, want once (by the one flusher)", s)
	}
}

// TestCommitSiblings: with fewer active transactions than commit_siblings
// the flusher does not sleep.
func TestCommitSiblings(t *testing.T) {
	clock := &gateClock{gate: func() {}}
	cfg := smallConfig()
	cfg.Clock = clock
	cfg.CommitDelay = time.Millisecond
	l, _, _ := openLog(t, vfs.NewMemFS(), cfg, nil)
	defer l.Close()
	l.SetActiveTransactions(func() int { return 4 }) // commit_siblings is 5
	_, end := insertPayload(t, l, 1, []byte("x"))
	if err := l.Flush(end); err != nil {
		t.Fatal(err)
	}
	if s := clock.sleeps.Load(); s != 0 {
		t.Fatalf("slept %d times with 4 active transactions", s)
	}
}

// TestConcurrentInsertFlush hammers Insert and Flush from many goroutines
// with a ring small enough to fill (run it under -race).
func TestConcurrentInsertFlush(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []written
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				p := taggedPayload(g, 0, i, (g*977+i*131)%5000)
				s, e := insertPayload(t, l, base.XID(g+1), p)
				if i%3 == 0 {
					if err := l.Flush(e); err != nil {
						t.Error(err)
						return
					}
					if l.FlushedLSN() < e {
						t.Errorf("Flush(%s) returned with flushed %s", e, l.FlushedLSN())
					}
				}
				mu.Lock()
				all = append(all, written{s, e, p})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := l.Flush(l.InsertLSN()); err != nil {
		t.Fatal(err)
	}
	crashed := fs.Clone()
	l.Close()
	l2, c, _ := openLog(t, crashed, Config{}, nil)
	defer l2.Close()
	if len(c.recs) != len(all) {
		t.Fatalf("recovered %d records, inserted %d", len(c.recs), len(all))
	}
	byLSN := map[base.LSN][]byte{}
	for _, w := range all {
		byLSN[w.start] = w.payload
	}
	for _, r := range c.recs {
		if !bytes.Equal(byLSN[r.lsn], r.payload) {
			t.Fatalf("record at %s differs", r.lsn)
		}
	}
}

// TestAsyncCommit: with synchronous_commit off, FlushCommit returns at once
// and the WAL writer makes the commit durable within wal_writer_delay.
func TestAsyncCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := smallConfig()
		cfg.SynchronousCommit = base.Off
		l, _, _ := openLog(t, vfs.NewMemFS(), cfg, nil)
		_, end := insertPayload(t, l, 1, []byte("commit"))
		if err := l.FlushCommit(end); err != nil {
			t.Fatal(err)
		}
		if l.FlushedLSN() >= end {
			t.Fatal("asynchronous commit flushed synchronously")
		}
		time.Sleep(DefaultWALWriterDelay + time.Millisecond)
		synctest.Wait()
		if l.FlushedLSN() < end {
			t.Fatalf("WAL writer did not flush %s within wal_writer_delay (flushed %s)", end, l.FlushedLSN())
		}
		l.Close() // the bubble fails if a goroutine outlives Close
	})
}

// TestCheckpointTriggers: the checkpointer runs on checkpoint_timeout, on
// request, and when the WAL passes its share of max_wal_size.
func TestCheckpointTriggers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := smallConfig()
		cfg.CheckpointTimeout = time.Minute
		l, _, _ := openLog(t, vfs.NewMemFS(), cfg, nil)
		defer l.Close()
		first := l.Control().CheckPoint
		insertPayload(t, l, 1, []byte("x"))
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		timed := l.Control().CheckPoint
		if timed == first {
			t.Fatal("no checkpoint after checkpoint_timeout")
		}
		// Idle: a timed checkpoint with nothing new is skipped.
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if l.Control().CheckPoint != timed {
			t.Fatal("timed checkpoint of an idle log was not skipped")
		}
		l.RequestCheckpoint()
		synctest.Wait()
		requested := l.Control().CheckPoint
		if requested == timed {
			t.Fatal("requested checkpoint did not run")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		cfg := smallConfig()
		cfg.MaxWALSize = 512 << 10
		l, _, _ := openLog(t, vfs.NewMemFS(), cfg, nil)
		defer l.Close()
		first := l.Control().CheckPoint
		for range 100 {
			insertPayload(t, l, 1, make([]byte, 3000)) // 300 KB > 512 KiB / 1.9
		}
		synctest.Wait()
		if l.Control().CheckPoint == first {
			t.Fatal("no checkpoint after passing max_wal_size / 1.9")
		}
	})
}

// TestWALWriterWokenByVolume: with synchronous commit off, a megabyte of
// unflushed commits wakes the WAL writer before its delay runs out.
func TestWALWriterWokenByVolume(t *testing.T) {
	fs := vfs.NewMemFS()
	cfg := smallConfig()
	cfg.SegmentSize = 4 << 20
	cfg.WALBuffers = 4 << 20
	cfg.SynchronousCommit = base.Off
	cfg.WALWriterDelay = time.Hour
	l, _, _ := openLog(t, fs, cfg, nil)
	defer l.Close()
	start := l.InsertLSN()
	var end base.LSN
	for end < start+walWriterFlushAfter+64<<10 {
		_, end = insertPayload(t, l, 1, make([]byte, 4000))
		if err := l.FlushCommit(end); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.FlushedLSN() < end-walWriterFlushAfter && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l.FlushedLSN() < end-walWriterFlushAfter {
		t.Fatalf("flushed %s of %s with an hour's WAL writer delay: not woken by volume", l.FlushedLSN(), end)
	}
}
