package xlog

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// benchLog opens a recovered log on the real disk in a temporary directory.
func benchLog(b *testing.B, cfg Config) *Log {
	b.Helper()
	l, err := Open(vfs.Default, b.TempDir(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.Recover(nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkGroupCommit: G goroutines each insert a 100-byte record and
// flush it, as committing transactions do. commits/fsync shows how many
// commits one fsync covers. The disk= variants add a fixed latency to every
// fsync of the real disk, to show the batching a disk without a volatile
// write cache would see (this VM's fsync takes ~20 µs).
func BenchmarkGroupCommit(b *testing.B) {
	for _, lat := range []time.Duration{0, time.Millisecond} {
		for _, g := range []int{1, 4, 16, 64} {
			name := fmt.Sprintf("G=%d", g)
			if lat > 0 {
				name = fmt.Sprintf("disk=%v/G=%d", lat, g)
			}
			b.Run(name, func(b *testing.B) { benchGroupCommit(b, g, lat) })
		}
	}
}

// slowSyncFS adds latency to every Sync, like a disk that really writes.
type slowSyncFS struct {
	vfs.FS
	lat time.Duration
}

type slowSyncFile struct {
	vfs.File
	lat time.Duration
}

func (f slowSyncFile) Sync() error { time.Sleep(f.lat); return f.File.Sync() }

func (s slowSyncFS) Create(name string) (vfs.File, error) {
	f, err := s.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, s.lat}, nil
}

func (s slowSyncFS) Open(name string) (vfs.File, error) {
	f, err := s.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, s.lat}, nil
}

func benchGroupCommit(b *testing.B, g int, lat time.Duration) {
	var fsys vfs.FS = vfs.Default
	if lat > 0 {
		fsys = slowSyncFS{vfs.Default, lat}
	}
	l, err := Open(fsys, b.TempDir(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.Recover(nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	payload := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	before := l.Stats()
	b.ResetTimer()
	t0 := time.Now()
	for i := range g {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				_, end, err := l.Insert(NewRecord(rmgrTest, 0, base.XID(i+1)).SetPayload(payload))
				if err == nil {
					err = l.Flush(end)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	b.StopTimer()
	after := l.Stats()
	syncs := float64(after.Syncs - before.Syncs)
	b.ReportMetric(float64((after.SyncTime-before.SyncTime).Microseconds())/max(syncs, 1), "µs/fsync")
	b.ReportMetric(float64(b.N)/elapsed, "commits/s")
	b.ReportMetric(syncs/elapsed, "fsyncs/s")
	b.ReportMetric(float64(b.N)/max(syncs, 1), "commits/fsync")
}

// BenchmarkRawFsync: overwrite 8 KiB of a file and fsync it, the floor
// under any commit.
func BenchmarkRawFsync(b *testing.B) {
	f, err := vfs.Default.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 8192)
	if _, err := f.WriteAt(buf, 0); err != nil {
		b.Fatal(err)
	}
	f.Sync()
	b.SetBytes(int64(len(buf)))
	t0 := time.Now()
	for b.Loop() {
		buf[0]++
		if _, err := f.WriteAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "fsyncs/s")
}

// BenchmarkInsert: insert 100-byte records without flushing; the ring is
// written out when it fills.
func BenchmarkInsert(b *testing.B) {
	for _, g := range []int{1, 2} {
		b.Run(fmt.Sprintf("G=%d", g), func(b *testing.B) {
			l := benchLog(b, Config{})
			payload := make([]byte, 100)
			size := int64(align8(HeaderSize + int64(len(payload))))
			b.SetBytes(size)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			t0 := time.Now()
			for i := range g {
				wg.Go(func() {
					rb := NewRecord(rmgrTest, 0, base.XID(i+1)).SetPayload(payload)
					for next.Add(1) <= int64(b.N) {
						if _, _, err := l.Insert(rb); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(t0).Seconds()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed, "records/s")
		})
	}
}
