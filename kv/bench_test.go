package kv

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The kv-layer benchmarks, with all data cached, beside pebble in the same
// binary with comparable settings: heapkv synchronous_commit off vs pebble
// NoSync, heapkv on vs pebble Sync.

const benchKeys = 10000

func benchKey(i int) []byte { return fmt.Appendf(nil, "user%08d", i) }

var benchValue = make([]byte, 100)

func benchDB(b *testing.B, sync SyncMode) *DB {
	b.Helper()
	db, err := Open(b.TempDir(), &Options{SharedBuffers: 64 << 20, SynchronousCommit: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	err = db.Update(context.Background(), func(tx *Tx) error {
		for i := range benchKeys {
			if err := tx.Put(benchKey(i), benchValue); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

func benchPebble(b *testing.B) *pebble.DB {
	b.Helper()
	p, err := pebble.Open(filepath.Join(b.TempDir(), "pebble"), &pebble.Options{Logger: quietLogger{}, Cache: pebble.NewCache(64 << 20)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	batch := p.NewBatch()
	for i := range benchKeys {
		batch.Set(benchKey(i), benchValue, nil)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkGet(b *testing.B) {
	b.Run("heapkv", func(b *testing.B) {
		db := benchDB(b, SyncOff)
		ctx := context.Background()
		i := 0
		for b.Loop() {
			tx, _ := db.Begin(ctx, TxOptions{ReadOnly: true})
			if _, err := tx.Get(benchKey(i % benchKeys)); err != nil {
				b.Fatal(err)
			}
			tx.Commit()
			i += 7919
		}
	})
	b.Run("pebble", func(b *testing.B) {
		p := benchPebble(b)
		i := 0
		for b.Loop() {
			v, c, err := p.Get(benchKey(i % benchKeys))
			if err != nil {
				b.Fatal(err)
			}
			_ = v
			c.Close()
			i += 7919
		}
	})
}

// BenchmarkPutCommit: one Put per transaction, G goroutines.
func BenchmarkPutCommit(b *testing.B) {
	for _, c := range []struct {
		name string
		sync SyncMode
		g    int
	}{{"sync=off/G=1", SyncOff, 1}, {"sync=on/G=1", SyncOn, 1}, {"sync=on/G=64", SyncOn, 64}} {
		b.Run("heapkv/"+c.name, func(b *testing.B) {
			db := benchDB(b, c.sync)
			runParallelCommits(b, c.g, func(i int) error {
				// Goroutines may meet on a key now and then: Update
				// retries the loser, as an application would.
				return db.Update(context.Background(), func(tx *Tx) error {
					return tx.Put(benchKey(i%benchKeys), benchValue)
				})
			})
		})
		b.Run("pebble/"+c.name, func(b *testing.B) {
			p := benchPebble(b)
			opt := pebble.Sync
			if c.sync == SyncOff {
				opt = pebble.NoSync
			}
			runParallelCommits(b, c.g, func(i int) error {
				return p.Set(benchKey(i%benchKeys), benchValue, opt)
			})
		})
	}
}

// runParallelCommits runs b.N calls of fn over g goroutines, each on its
// own keys (so heapkv's writers do not queue behind one another's row
// locks), and reports commits/s.
func runParallelCommits(b *testing.B, g int, fn func(i int) error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for w := range g {
		wg.Go(func() {
			for {
				i := n.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := fn(w + g*int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "commits/s")
}
