package pagecache

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// Storage is the storage manager: it maps a relation to its file
// DIR/base/<relfilenode> and reads, writes, extends and truncates whole
// blocks. It remembers which files were written since the last checkpoint so
// that the checkpoint can fsync exactly those (PostgreSQL's pending-sync
// table).
//
// Storage does no caching of page contents; that is the buffer pool's job.
// Its maps hold one entry per relation, never one per block.
//
// A failed fsync stops the engine's Halt (given by NewPool from
// Config.Halt) and is sticky besides. Once the Halt is stopped, for that or
// any other reason, Storage changes nothing on disk: Create, Write, Extend,
// Truncate, Drop and Sync return the Halt's error. Reads go on working.
type Storage struct {
	fs   vfs.FS
	dir  string // DIR/base
	halt atomic.Pointer[base.Halt]

	mu struct {
		sync.Mutex
		files   map[base.RelFileNode]*relFile // open relations
		pending map[base.RelFileNode]struct{} // written since the last Sync
		failed  error                         // first failed data fsync; sticky
	}
}

// relFile is one open relation. extendMu is the relation extension lock: it
// serialises growing the file so two extenders never get the same block.
type relFile struct {
	f vfs.File
	// dropped is set by Drop before it closes f, so that a Sync that took
	// f before the drop knows a failure of f's fsync means nothing.
	dropped  atomic.Bool
	extendMu sync.Mutex
	mu       sync.Mutex
	nblocks  base.BlockNum // guarded by mu; the file's size in blocks
}

// OpenStorage opens the storage manager over dir (the data directory; relation
// files live in dir/base), creating dir/base if needed.
func OpenStorage(fsys vfs.FS, dir string) (*Storage, error) {
	s := &Storage{fs: fsys, dir: path.Join(dir, "base")}
	if err := fsys.MkdirAll(s.dir); err != nil {
		return nil, fmt.Errorf("pagecache: create %s: %w", s.dir, err)
	}
	s.mu.files = make(map[base.RelFileNode]*relFile)
	s.mu.pending = make(map[base.RelFileNode]struct{})
	return s, nil
}

// setHalt makes h the Halt that a failed fsync stops and that stops every
// change to the files. NewPool calls it with Config.Halt.
func (s *Storage) setHalt(h *base.Halt) { s.halt.Store(h) }

// changeAllowedLocked returns the error that forbids changing the files:
// the Halt's once the engine has stopped, else the sticky fsync failure,
// else nil. s.mu must be held.
func (s *Storage) changeAllowedLocked() error {
	if err := s.halt.Load().Err(); err != nil {
		return err
	}
	return s.mu.failed
}

func (s *Storage) path(rel base.RelFileNode) string {
	return path.Join(s.dir, strconv.FormatUint(uint64(rel), 10))
}

// Create creates an empty relation file and makes its name durable. A
// relation whose file exists already is opened, never truncated: only an
// error that proves the file missing (fs.ErrNotExist) leads to the create.
// Any other error (EIO, EACCES, ...) is returned naming the relation, since
// creating the file anyway would empty a relation that may hold data.
func (s *Storage) Create(rel base.RelFileNode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.files[rel]; ok {
		return nil
	}
	if err := s.openLocked(rel); !errors.Is(err, ErrNoRelation) {
		return err // opened (nil), or an error that does not prove absence
	}
	if err := s.changeAllowedLocked(); err != nil {
		return err
	}
	p := s.path(rel)
	f, err := s.fs.Create(p)
	if err != nil {
		return fmt.Errorf("pagecache: create relation %d: %w", rel, err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		f.Close()
		return fmt.Errorf("pagecache: create relation %d: sync directory: %w", rel, err)
	}
	s.mu.files[rel] = &relFile{f: f}
	return nil
}

// Exists reports whether the relation's file exists. An error other than
// fs.ErrNotExist while looking counts as existing: the file may well be
// there, and the usual follow-up of a false answer is Create. Create itself
// does not rely on Exists; it is safe to call for a relation that exists.
func (s *Storage) Exists(rel base.RelFileNode) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.files[rel]; ok {
		return true
	}
	_, err := s.fs.Stat(s.path(rel))
	return !vfs.IsNotExist(err)
}

// openLocked opens an existing relation file. s.mu must be held.
func (s *Storage) openLocked(rel base.RelFileNode) error {
	f, err := s.fs.Open(s.path(rel))
	if err != nil {
		if vfs.IsNotExist(err) {
			return fmt.Errorf("relation %d: %w", rel, ErrNoRelation)
		}
		return fmt.Errorf("pagecache: open relation %d: %w", rel, err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return fmt.Errorf("pagecache: size of relation %d: %w", rel, err)
	}
	// A crash can leave a partial block at the end of a file that was being
	// extended; it was never acknowledged, so it does not count.
	s.mu.files[rel] = &relFile{f: f, nblocks: base.BlockNum(size / BlockSize)}
	return nil
}

func (s *Storage) file(rel base.RelFileNode) (*relFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rf, ok := s.mu.files[rel]
	if !ok {
		if err := s.openLocked(rel); err != nil {
			return nil, err
		}
		rf = s.mu.files[rel]
	}
	return rf, nil
}

// NBlocks returns the relation's size in blocks.
func (s *Storage) NBlocks(rel base.RelFileNode) (base.BlockNum, error) {
	rf, err := s.file(rel)
	if err != nil {
		return 0, err
	}
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return rf.nblocks, nil
}

// Read reads block blk of rel into buf, which must be BlockSize long. It does
// not verify the page; the buffer pool does.
func (s *Storage) Read(rel base.RelFileNode, blk base.BlockNum, buf []byte) error {
	rf, err := s.file(rel)
	if err != nil {
		return err
	}
	n, err := rf.f.ReadAt(buf[:BlockSize], int64(blk)*BlockSize)
	if err != nil && !(errors.Is(err, io.EOF) && n == BlockSize) {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("pagecache: read block %d of relation %d: %w", blk, rel, ErrBlockOutOfRange)
		}
		return fmt.Errorf("pagecache: read block %d of relation %d: %w", blk, rel, err)
	}
	return nil
}

// Write writes buf as block blk of rel and remembers that rel needs an fsync
// at the next checkpoint. Writing past the end extends the file.
//
// The relation is registered for fsync after the write has returned, not
// before (PostgreSQL's register_dirty_segment after mdwrite): a Sync that
// runs between a registration and the write would clear it and fsync too
// early, and the next checkpoint would then not fsync the file at all,
// though its redo point moves past the WAL of the page written.
func (s *Storage) Write(rel base.RelFileNode, blk base.BlockNum, buf []byte) error {
	rf, err := s.file(rel)
	if err != nil {
		return err
	}
	s.mu.Lock()
	refused := s.changeAllowedLocked()
	s.mu.Unlock()
	if refused != nil {
		return refused
	}
	if _, err := rf.f.WriteAt(buf[:BlockSize], int64(blk)*BlockSize); err != nil {
		return fmt.Errorf("pagecache: write block %d of relation %d: %w", blk, rel, err)
	}
	s.mu.Lock()
	s.mu.pending[rel] = struct{}{}
	s.mu.Unlock()
	rf.mu.Lock()
	rf.nblocks = max(rf.nblocks, blk+1)
	rf.mu.Unlock()
	return nil
}

// Extend adds one zero block at the end of rel and returns its number. The
// zero page is written at once so that running out of space shows here, not
// at a later eviction (PostgreSQL's smgrextend).
func (s *Storage) Extend(rel base.RelFileNode) (base.BlockNum, error) {
	rf, err := s.file(rel)
	if err != nil {
		return 0, err
	}
	rf.extendMu.Lock()
	defer rf.extendMu.Unlock()
	rf.mu.Lock()
	blk := rf.nblocks
	rf.mu.Unlock()
	if blk == base.InvalidBlock {
		return 0, fmt.Errorf("pagecache: relation %d cannot grow past %d blocks", rel, blk)
	}
	var zero [BlockSize]byte
	if err := s.Write(rel, blk, zero[:]); err != nil {
		return 0, err
	}
	return blk, nil
}

// Truncate cuts rel to nblocks blocks.
func (s *Storage) Truncate(rel base.RelFileNode, nblocks base.BlockNum) error {
	rf, err := s.file(rel)
	if err != nil {
		return err
	}
	rf.extendMu.Lock()
	defer rf.extendMu.Unlock()
	s.mu.Lock()
	refused := s.changeAllowedLocked()
	s.mu.Unlock()
	if refused != nil {
		return refused
	}
	if err := rf.f.Truncate(int64(nblocks) * BlockSize); err != nil {
		return fmt.Errorf("pagecache: truncate relation %d to %d blocks: %w", rel, nblocks, err)
	}
	s.mu.Lock()
	s.mu.pending[rel] = struct{}{}
	s.mu.Unlock()
	rf.mu.Lock()
	rf.nblocks = nblocks
	rf.mu.Unlock()
	return nil
}

// Drop closes and removes the relation's file. The caller must first drop the
// relation's buffers (Pool.DropRelation).
func (s *Storage) Drop(rel base.RelFileNode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.changeAllowedLocked(); err != nil {
		return err
	}
	if rf, ok := s.mu.files[rel]; ok {
		rf.dropped.Store(true)
		rf.f.Close()
		delete(s.mu.files, rel)
	}
	delete(s.mu.pending, rel) // forget its fsync request
	if err := s.fs.Remove(s.path(rel)); err != nil && !vfs.IsNotExist(err) {
		return fmt.Errorf("pagecache: remove relation %d: %w", rel, err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("pagecache: remove relation %d: sync directory: %w", rel, err)
	}
	return nil
}

// Sync fsyncs every relation written since the last Sync. A failed fsync is
// fatal: the kernel may have thrown the dirty pages away, so Sync stops the
// Halt with an error matching ErrDataSyncFailed, and this and every later
// change or Sync fails (with the Halt's error, or the sticky fsync error if
// there is no Halt). After a Halt stopped for any reason Sync refuses too:
// a checkpoint must not complete once the engine has stopped.
func (s *Storage) Sync() error {
	s.mu.Lock()
	if err := s.changeAllowedLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	todo := make([]*relFile, 0, len(s.mu.pending))
	rels := make([]base.RelFileNode, 0, len(s.mu.pending))
	for rel := range s.mu.pending {
		if rf, ok := s.mu.files[rel]; ok {
			todo = append(todo, rf)
			rels = append(rels, rel)
		}
	}
	clear(s.mu.pending)
	s.mu.Unlock()

	for i, rf := range todo {
		if err := rf.f.Sync(); err != nil {
			if rf.dropped.Load() {
				continue // dropped meanwhile: nothing of it must be durable
			}
			err = fmt.Errorf("%w: relation %d: %w", ErrDataSyncFailed, rels[i], err)
			s.mu.Lock()
			if s.mu.failed == nil {
				s.mu.failed = err
			}
			s.mu.Unlock()
			s.halt.Load().Stop(err)
			return err
		}
	}
	return nil
}

// Close closes every open relation file.
func (s *Storage) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for rel, rf := range s.mu.files {
		if err := rf.f.Close(); err != nil && first == nil {
			first = err
		}
		delete(s.mu.files, rel)
	}
	return first
}
