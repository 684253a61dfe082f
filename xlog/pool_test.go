package xlog

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
)

// TestWithBufferPool runs the log with the real buffer pool: the pool's
// FlushWAL is Log.Flush, checkpoints write through the pool, and the pages
// of a relation larger than the pool are changed by WAL-logged page deltas
// from several goroutines. The FS then crashes, tearing the unsynced page
// writes; recovery must bring every page to a version at least as new as
// the last one whose record was flushed, with every checksum valid.
func TestWithBufferPool(t *testing.T) {
	seeds := 20
	if testing.Short() || defaultCrashSeeds < 200 {
		seeds = 5
	}
	testutil.RunCrashSeeds(t, seeds, func(t *testing.T, c testutil.CrashSeed) {
		if err := runPoolCrash(t, c.Seed); err != nil {
			t.Fatal(err)
		}
	})
}

const (
	poolRel base.RelFileNode = 40
	verOff                   = pagecache.BlockSize - 2000
	patOff                   = pagecache.BlockSize - 1900
)

func openPoolLog(t *testing.T, fs vfs.FS) (*Log, *pagecache.Pool, error) {
	t.Helper()
	smgr, err := pagecache.OpenStorage(fs, testDir)
	if err != nil {
		return nil, nil, err
	}
	var l *Log
	pool, err := pagecache.NewPool(smgr, pagecache.Config{
		SharedBuffers: 16 * pagecache.BlockSize,
		FlushWAL:      func(lsn base.LSN) error { return l.Flush(lsn) },
	})
	if err != nil {
		return nil, nil, err
	}
	l, err = Open(fs, testDir, smallConfig())
	if err != nil {
		return nil, nil, err
	}
	if _, err := l.Recover(pool); err != nil {
		return nil, nil, err
	}
	return l, pool, nil
}

func runPoolCrash(t *testing.T, seed int64) error {
	const nblocks, writers = 48, 4
	fs := vfs.NewMemFS()
	l, pool, err := openPoolLog(t, fs)
	if err != nil {
		return err
	}
	if err := pool.Storage().Create(poolRel); err != nil {
		return err
	}
	for range nblocks {
		b, err := pool.Extend(poolRel, nil)
		if err != nil {
			return err
		}
		b.Page().Init(0)
		// The data lives in tuple space (above upper): a full-page image
		// leaves out the hole between lower and upper.
		b.Page().SetUpper(pagecache.BlockSize - 2048)
		b.MarkDirty()
		_, end, err := l.Insert(NewRecord(RmgrXLOG, InfoPage, 0).Image(poolRel, b.BlockNum(), b.Page()))
		if err != nil {
			return err
		}
		b.Page().SetLSN(end)
		b.UnlockExclusive()
		b.Release()
	}

	// history[blk] lists (end LSN, version) of every logged change.
	type change struct {
		end base.LSN
		ver uint64
	}
	var mu sync.Mutex
	history := make([][]change, nblocks)
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
			before := make([]byte, pagecache.BlockSize)
			for range 150 {
				blk := base.BlockNum(r.IntN(nblocks))
				b, err := pool.ReadBuffer(poolRel, blk, pagecache.ReadNormal, nil)
				if err != nil {
					errc <- err
					return
				}
				b.LockExclusive()
				p := b.Page()
				copy(before, p)
				ver := binary.LittleEndian.Uint64(p[verOff:]) + 1
				binary.LittleEndian.PutUint64(p[verOff:], ver)
				for i := patOff; i < patOff+1000; i++ {
					p[i] = byte(ver)
				}
				b.MarkDirty() // before the insert: pagecache rule 1
				_, end, err := l.Insert(NewRecord(RmgrXLOG, InfoPage, 0).Page(poolRel, blk, before, p))
				if err == nil {
					p.SetLSN(end)
					mu.Lock()
					history[blk] = append(history[blk], change{end, ver})
					mu.Unlock()
				}
				b.UnlockExclusive()
				b.Release()
				if err != nil {
					errc <- err
					return
				}
				switch r.IntN(40) {
				case 0:
					if err := l.Checkpoint(); err != nil {
						errc <- err
						return
					}
				case 1, 2:
					if err := l.Flush(end); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		return err
	}
	flushed := l.FlushedLSN()
	// The process dies: its goroutines do nothing more. Crashing the FS in
	// place while the WAL writer could still raise must-reach would let a
	// dead process's rename race the new one's control file writes.
	l.Abandon()
	fs.Crash(vfs.CrashOptions{Seed: seed, KeepUnsynced: 0.3, TearProbability: 0.7})

	l, pool, err = openPoolLog(t, fs)
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	defer l.Close()
	for blk := range base.BlockNum(nblocks) {
		var min uint64
		for _, c := range history[blk] {
			if c.end <= flushed {
				min = max(min, c.ver)
			}
		}
		if min == 0 {
			continue
		}
		err := pool.WithPage(poolRel, blk, pagecache.Shared, func(p pagecache.Page) (bool, error) {
			ver := binary.LittleEndian.Uint64(p[verOff:])
			if ver < min {
				return false, fmt.Errorf("block %d at version %d, flushed WAL had version %d", blk, ver, min)
			}
			for i := patOff; i < patOff+1000; i++ {
				if p[i] != byte(ver) {
					return false, fmt.Errorf("block %d version %d: byte %d is %d", blk, ver, i, p[i])
				}
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
