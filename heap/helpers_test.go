package heap

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// testSeed returns the seed a randomized test starts from and logs it.
func testSeed(t testing.TB) int64 { return testutil.Seed(t) }

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0x68656170)) }

const (
	testDir = "/db"
	testRel = base.RelFileNode(16384)
)

// clog is a commit log for tests: statuses and durability set by hand.
type clog struct {
	mu      sync.Mutex
	status  map[base.XID]txn.Status
	durable map[base.XID]bool
	next    base.XID
}

func newClog() *clog {
	return &clog{status: map[base.XID]txn.Status{}, durable: map[base.XID]bool{}, next: txn.FirstNormalXID}
}

func (c *clog) Status(xid base.XID) (txn.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status[xid], nil
}

func (c *clog) IsDurable(xid base.XID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.durable[xid]
}

func (c *clog) set(xid base.XID, st txn.Status, durable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[xid] = st
	c.durable[xid] = durable
}

func (c *clog) setDurable(xid base.XID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.durable[xid] = true
}

// newXID hands out the next xid (no ProcArray involved).
func (c *clog) newXID() base.XID {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := c.next
	c.next++
	return x
}

// env is a heap over a WAL and a buffer pool on one file system.
type env struct {
	fs   vfs.FS
	wal  *xlog.Log
	pool *pagecache.Pool
	h    *Heap
	clog *clog
	res  xlog.RecoveryResult
}

type envConfig struct {
	poolPages int         // default 64
	wal       xlog.Config // zero fields: test defaults below
	clog      *clog       // default: a new one
	noHeap    bool        // open WAL and pool only
	poolCfg   func(*pagecache.Config)
}

// openEnv opens (and recovers) a data directory on fsys.
func openEnv(t testing.TB, fsys vfs.FS, cfg envConfig) *env {
	t.Helper()
	e, err := tryOpenEnv(fsys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func tryOpenEnv(fsys vfs.FS, cfg envConfig) (*env, error) {
	if cfg.poolPages == 0 {
		cfg.poolPages = 64
	}
	wcfg := cfg.wal
	if wcfg.SegmentSize == 0 {
		wcfg.SegmentSize = 1 << 20
	}
	if wcfg.WALBuffers == 0 {
		wcfg.WALBuffers = 256 << 10
	}
	if wcfg.CheckpointTimeout == 0 {
		wcfg.CheckpointTimeout = time.Hour
	}
	if wcfg.MaxWALSize == 0 {
		wcfg.MaxWALSize = 1 << 40
	}
	e := &env{fs: fsys, clog: cfg.clog}
	if e.clog == nil {
		e.clog = newClog()
	}
	wal, err := xlog.Open(fsys, testDir, wcfg)
	if err != nil {
		return nil, err
	}
	e.wal = wal
	smgr, err := pagecache.OpenStorage(fsys, testDir)
	if err != nil {
		wal.Close()
		return nil, err
	}
	pcfg := pagecache.Config{SharedBuffers: cfg.poolPages * pagecache.BlockSize, FlushWAL: wal.Flush}
	if cfg.poolCfg != nil {
		cfg.poolCfg(&pcfg)
	}
	pool, err := pagecache.NewPool(smgr, pcfg)
	if err != nil {
		wal.Close()
		return nil, err
	}
	e.pool = pool
	if err := RegisterRedo(wal); err != nil {
		e.close()
		return nil, err
	}
	if e.res, err = wal.Recover(pool); err != nil {
		e.close()
		return nil, err
	}
	if !cfg.noHeap {
		e.h, err = Open(Config{Pool: pool, WAL: wal, FS: fsys, Dir: testDir, Rel: testRel, Status: e.clog})
		if err != nil {
			e.close()
			return nil, err
		}
	}
	return e, nil
}

// close shuts down cleanly: the WAL writes a shutdown checkpoint (which
// writes the pool), then the pool closes.
func (e *env) close() error {
	err := e.wal.Close()
	if perr := e.pool.Close(); err == nil {
		err = perr
	}
	return err
}

func (e *env) mustClose(t testing.TB) {
	t.Helper()
	if err := e.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// snapAll is a snapshot that sees every transaction that ended.
func snapAll() *txn.Snapshot {
	return &txn.Snapshot{XMin: base.XID(1) << 62, XMax: base.XID(1) << 62}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}
