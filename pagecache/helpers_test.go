package pagecache

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
)

// testSeed returns the seed to use and logs it so a failure can be replayed
// with -seed.
func testSeed(t testing.TB) uint64 { return uint64(testutil.Seed(t)) }

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// openPool opens a pool of nbuf buffers over dir on fsys.
func openPool(t testing.TB, fsys vfs.FS, dir string, nbuf int, cfg Config) *Pool {
	t.Helper()
	smgr, err := OpenStorage(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SharedBuffers = nbuf * BlockSize
	bp, err := NewPool(smgr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

// Stamped pages: the header, then the block number and a version, then a
// fill pattern derived from both, so a page from the wrong block, a stale
// version or a half-written page is caught by checkStamp.
const (
	offStampBlk = PageHeaderSize
	offStampVer = PageHeaderSize + 4
	offStampPat = PageHeaderSize + 12
)

func stamp(p Page, blk base.BlockNum, ver uint64) {
	if p.IsNew() {
		p.Init(0)
	}
	binary.LittleEndian.PutUint32(p[offStampBlk:], uint32(blk))
	binary.LittleEndian.PutUint64(p[offStampVer:], ver)
	b := byte(uint64(blk)*31 + ver*7)
	for i := offStampPat; i < offStampPat+512; i++ {
		p[i] = b
	}
}

func checkStamp(p Page, blk base.BlockNum, ver uint64) error {
	gotBlk := base.BlockNum(binary.LittleEndian.Uint32(p[offStampBlk:]))
	gotVer := binary.LittleEndian.Uint64(p[offStampVer:])
	if gotBlk != blk || gotVer != ver {
		return fmt.Errorf("block %d: page says block %d version %d, want version %d", blk, gotBlk, gotVer, ver)
	}
	b := byte(uint64(blk)*31 + ver*7)
	for i := offStampPat; i < offStampPat+512; i++ {
		if p[i] != b {
			return fmt.Errorf("block %d version %d: pattern byte %d is %#x, want %#x", blk, ver, i, p[i], b)
		}
	}
	return nil
}

// createRel makes relation rel with nblocks stamped pages (version 0) and
// checkpoints them to disk.
func createRel(t testing.TB, bp *Pool, rel base.RelFileNode, nblocks int) {
	t.Helper()
	if err := bp.Storage().Create(rel); err != nil {
		t.Fatal(err)
	}
	s := bp.NewStrategy(BulkWrite)
	for i := range nblocks {
		b, err := bp.Extend(rel, s)
		if err != nil {
			t.Fatal(err)
		}
		if b.BlockNum() != base.BlockNum(i) {
			t.Fatalf("extend returned block %d, want %d", b.BlockNum(), i)
		}
		stamp(b.Page(), b.BlockNum(), 0)
		b.MarkDirty()
		b.UnlockExclusive()
		b.Release()
	}
	if err := bp.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
}

// hookFS wraps an FS and calls onWrite / onSync for every file write and
// sync, so tests can watch the order of I/O.
type hookFS struct {
	vfs.FS
	mu      sync.Mutex
	onWrite func(name string, p []byte, off int64)
	onSync  func(name string)
}

type hookFile struct {
	vfs.File
	fs *hookFS
}

func (h *hookFS) Create(name string) (vfs.File, error) {
	f, err := h.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return hookFile{f, h}, nil
}

func (h *hookFS) Open(name string) (vfs.File, error) {
	f, err := h.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return hookFile{f, h}, nil
}

func (f hookFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.onWrite != nil {
		f.fs.mu.Lock()
		f.fs.onWrite(f.Name(), p, off)
		f.fs.mu.Unlock()
	}
	return f.File.WriteAt(p, off)
}

func (f hookFile) Sync() error {
	if f.fs.onSync != nil {
		f.fs.mu.Lock()
		f.fs.onSync(f.Name())
		f.fs.mu.Unlock()
	}
	return f.File.Sync()
}
