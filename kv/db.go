package kv

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/sortspill"
	"github.com/heapkv/heapkv/table"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// formatVersion is the data directory format this build reads and writes.
const formatVersion = 1

// Fixed relations: the catalog (the system keyspace naming the others) and
// the default keyspace.
const (
	catalogHeapRel  base.RelFileNode = 1
	catalogIndexRel base.RelFileNode = 2
	defaultHeapRel  base.RelFileNode = 3
	defaultIndexRel base.RelFileNode = 4
	firstUserRel    base.RelFileNode = 16
)

// DB is an open data directory. It is safe for concurrent use; each Tx
// belongs to one goroutine.
type DB struct {
	fs  vfs.FS
	dir string
	cfg *config

	lock io.Closer
	halt *base.Halt // the engine's fatal state, shared by every subsystem
	pool *pagecache.Pool
	wal  *xlog.Log
	txm  *txn.Manager
	temp *sortspill.TempSpace // DIR/tmp, where sorts and hashes spill

	catalog *keyspace // the system keyspace
	def     *keyspace // the default keyspace

	ksMu      sync.Mutex
	keyspaces map[base.RelFileNode]*keyspace // opened relations, by heap rel
	nextRel   atomic.Uint32

	closed  atomic.Bool
	closeMu sync.RWMutex // Close waits for calls in progress

	stats dbCounters
}

type dbCounters struct {
	conflicts, deadlocks, lockTimeouts atomic.Uint64
}

// keyspace is one keyspace: its table (the pair of relations) and the
// estimates kv keeps for it.
type keyspace struct {
	name   string
	t      *table.Table
	counts ksCounters
	// stats are the planner's statistics from the last Analyze; nil
	// until the first.
	stats atomic.Pointer[table.Statistics]
	// analyzeMu lets one Analyze of the keyspace run at a time.
	analyzeMu sync.Mutex
}

// Open opens the database in dir, creating it if dir holds none, and
// recovers it if it was not shut down cleanly. opts may be nil: the
// defaults, then DIR/heapkv.conf, then opts' non-zero fields apply.
func Open(dir string, opts *Options) (*DB, error) {
	return open(vfs.Default, dir, opts)
}

func open(fsys vfs.FS, dir string, opts *Options) (_ *DB, err error) {
	dir = path.Clean(dir)
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("kv: create %s: %w", dir, err)
	}
	if err := checkDirPerm(fsys, dir); err != nil {
		return nil, err
	}
	confPath := path.Join(dir, "heapkv.conf")
	conf, err := vfs.ReadFile(fsys, confPath)
	if err != nil && !vfs.IsNotExist(err) {
		return nil, fmt.Errorf("kv: read %s: %w", confPath, err)
	}
	cfg, err := resolveConfig(confPath, conf, opts)
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	db := &DB{fs: fsys, dir: dir, cfg: cfg, lock: lock, halt: base.NewHalt(), keyspaces: make(map[base.RelFileNode]*keyspace)}
	defer func() {
		if err != nil {
			db.abandon()
		}
	}()
	creating, err := db.prepareDir()
	if err != nil {
		return nil, err
	}
	if err := db.openEngine(); err != nil {
		return nil, err
	}
	if creating {
		if err := db.finishCreate(); err != nil {
			return nil, err
		}
	}
	return db, nil
}

// checkDirPerm refuses a data directory that others may write to, as
// PostgreSQL does: anyone who can write there can replace the WAL or a
// relation file. Open creates it 0700.
func checkDirPerm(fsys vfs.FS, dir string) error {
	perm, err := fsys.Perm(dir)
	if err != nil {
		return fmt.Errorf("kv: %s: %w", dir, err)
	}
	if perm&0o022 != 0 {
		return fmt.Errorf("kv: data directory %s has mode %04o: %w: it must not be group- or world-writable (chmod 0700 %s)",
			dir, perm, fs.ErrPermission, dir)
	}
	return nil
}

// lockDir takes DIR/LOCK and writes our pid into it.
func lockDir(fsys vfs.FS, dir string) (io.Closer, error) {
	p := path.Join(dir, "LOCK")
	l, err := fsys.Lock(p)
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			pid := "unknown"
			if b, rerr := vfs.ReadFile(fsys, p); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
				pid = strings.TrimSpace(string(b))
			}
			return nil, fmt.Errorf("%w: %s is locked by process %s", ErrLocked, dir, pid)
		}
		return nil, fmt.Errorf("kv: lock %s: %w", p, err)
	}
	if f, err := fsys.Open(p); err == nil {
		pid := strconv.Itoa(os.Getpid()) + "\n"
		f.Truncate(0)
		f.WriteAt([]byte(pid), 0)
		f.Close()
	}
	return l, nil
}

// openEngine wires the subsystems and runs recovery: WAL, buffer pool,
// transaction manager, access methods' redo, replay, then the catalog.
func (db *DB) openEngine() error {
	c := db.cfg
	smgr, err := pagecache.OpenStorage(db.fs, db.dir)
	if err != nil {
		return err
	}
	// The log comes first and the pool's callback into it is a method
	// value, so nothing depends on a closure reading a field set later.
	db.wal, err = xlog.Open(db.fs, db.dir, c.walConfig(db.halt))
	if err != nil {
		return err
	}
	db.pool, err = pagecache.NewPool(smgr, c.poolConfig(db.halt, db.wal.Flush))
	if err != nil {
		return err
	}
	db.txm, err = txn.NewManager(db.fs, db.dir, db.wal, c.txnConfig(db.halt))
	if err != nil {
		return err
	}
	db.wal.SetActiveTransactions(db.txm.Active)
	if err := table.RegisterRedo(db.wal); err != nil {
		return err
	}
	res, err := db.wal.Recover(db.pool)
	if err != nil {
		return err
	}
	if err := db.txm.Recovered(res); err != nil {
		return err
	}
	if err := db.openTemp(); err != nil {
		return err
	}
	if db.catalog, err = db.openKeyspace("", catalogHeapRel, catalogIndexRel); err != nil {
		return err
	}
	if db.def, err = db.openKeyspace("default", defaultHeapRel, defaultIndexRel); err != nil {
		return err
	}
	if err := db.initRelCounter(); err != nil {
		return err
	}
	if err := db.removeOrphans(); err != nil {
		return err
	}
	db.pool.StartBgWriter()
	return nil
}

// openTemp creates DIR/tmp and removes the temp files a crash left there.
// Files the engine did not write are left alone and logged.
func (db *DB) openTemp() error {
	tmp := path.Join(db.dir, "tmp")
	if err := db.fs.MkdirAll(tmp); err != nil {
		return fmt.Errorf("kv: create %s: %w", tmp, err)
	}
	db.temp = sortspill.NewTempSpace(db.fs, tmp, db.cfg.tempOptions())
	if n, err := db.temp.Sweep(); err != nil {
		return fmt.Errorf("kv: %w", err)
	} else if n > 0 {
		db.cfg.Logger.Info("kv: removed temp files left by an earlier run", "dir", tmp, "files", n)
	}
	return nil
}

// openKeyspace opens (creating if needed) the table of a keyspace, or
// returns the handle already open.
func (db *DB) openKeyspace(name string, heapRel, indexRel base.RelFileNode) (*keyspace, error) {
	db.ksMu.Lock()
	defer db.ksMu.Unlock()
	if ks, ok := db.keyspaces[heapRel]; ok {
		return ks, nil
	}
	t, err := table.Open(table.Config{Pool: db.pool, WAL: db.wal, FS: db.fs, Dir: db.dir, Status: db.txm, Logger: db.cfg.Logger}, heapRel, indexRel)
	if err != nil {
		return nil, err
	}
	ks := &keyspace{name: name, t: t}
	db.keyspaces[heapRel] = ks
	return ks, nil
}

// initRelCounter sets the next relfilenode past every relation file.
func (db *DB) initRelCounter() error {
	names, err := db.fs.List(path.Join(db.dir, "base"))
	if err != nil {
		return err
	}
	next := uint32(firstUserRel)
	for _, n := range names {
		if rel, ok := relOfFile(n); ok {
			next = max(next, uint32(rel)+1)
		}
	}
	db.nextRel.Store(next)
	return nil
}

func relOfFile(name string) (base.RelFileNode, bool) {
	num, _, _ := strings.Cut(name, "_")
	n, err := strconv.ParseUint(num, 10, 32)
	return base.RelFileNode(n), err == nil
}

// abandon releases what a failed Open had taken.
//
// It writes nothing: no shutdown checkpoint (recovery may not have
// finished, so a checkpoint could record a state Open never established,
// such as a next xid of 0) and no control file. The next Open recovers.
func (db *DB) abandon() {
	if db.wal != nil {
		db.wal.Abandon()
	}
	if db.pool != nil {
		db.pool.Close()
	}
	if db.lock != nil {
		db.lock.Close()
	}
}

// Close waits for calls in progress, writes a shutdown checkpoint and
// releases the directory. A transaction still open gets ErrClosed from then
// on; its writes are lost, as in a crash. If the engine has stopped on a
// fatal I/O error, Close writes nothing (no checkpoint may move the redo
// point past data that may not be durable), releases the directory and
// returns ErrEngineStopped; the next Open recovers.
func (db *DB) Close() error {
	if !db.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if err := db.halt.Err(); err != nil {
		db.abandon()
		return err
	}
	db.ksMu.Lock()
	for _, ks := range db.keyspaces {
		ks.t.SaveFSM()
	}
	db.ksMu.Unlock()
	err := db.wal.Close() // writes the shutdown checkpoint through the pool
	if perr := db.pool.Close(); err == nil {
		err = perr
	}
	if lerr := db.lock.Close(); err == nil {
		err = lerr
	}
	if herr := db.halt.Err(); herr != nil {
		return herr // the shutdown checkpoint itself failed fatally
	}
	return err
}

// enter marks the start of a call that uses the engine; it fails once
// Close has begun. leave must follow.
func (db *DB) enter() error {
	if db.closed.Load() {
		return ErrClosed
	}
	if err := db.halt.Err(); err != nil {
		return err
	}
	db.closeMu.RLock()
	if db.closed.Load() {
		db.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (db *DB) leave() { db.closeMu.RUnlock() }

// Checkpoint forces a checkpoint now.
func (db *DB) Checkpoint() error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	return db.stopped(db.wal.Checkpoint())
}

// stopped returns err, or, if the engine stopped on the way (a subsystem
// stopped the Halt and returned its own cause), the Halt's error, which
// matches ErrEngineStopped and that cause.
func (db *DB) stopped(err error) error {
	if err == nil || errors.Is(err, ErrEngineStopped) {
		return err
	}
	if herr := db.halt.Err(); herr != nil {
		return herr
	}
	return err
}

// Settings lists every setting with its value and where it came from,
// like PostgreSQL's SHOW ALL.
func (db *DB) Settings() []Setting { return db.cfg.settings() }

// Dir returns the data directory.
func (db *DB) Dir() string { return db.dir }
