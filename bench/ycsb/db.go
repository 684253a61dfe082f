package ycsb

import "errors"

// DB is one engine under test, shared by all client threads (safe for
// concurrent use). Keys and values passed in are the caller's and must
// not be retained; returned slices are the caller's.
type DB interface {
	// Read returns the whole record.
	Read(key []byte) ([]byte, error)
	// Update replaces the record with modify(old) in one transaction
	// (read-merge-write: an update rewrites one field).
	Update(key []byte, modify func(old []byte) []byte) error
	// ReadModifyWrite reads the record and writes modify(old) in one
	// transaction, returning what it read.
	ReadModifyWrite(key []byte, modify func(old []byte) []byte) ([]byte, error)
	// Insert writes a new record.
	Insert(key, value []byte) error
	// Scan reads up to count records from the first key >= start and
	// returns how many it read. Each value must reach the client: copied
	// out of the engine into a buffer the client owns (one reused buffer
	// is enough), as upstream's scan fills its result vector. Merely
	// stepping over values an engine keeps in an mmap or block cache would
	// measure less work than the others do.
	Scan(start []byte, count int) (int, error)
	// Close releases the engine.
	Close() error
}

// Reporter is implemented by drivers that can say what the engine did
// during a phase (heapkv: buffer hits and reads, WAL volume and full-page
// images, checkpoints, lock waits). The runner prints it after each run.
type Reporter interface {
	Report() string
}

// Durability of a commit, with one meaning for every engine.
type Durability int

const (
	// Durable: a commit is on stable storage (fsync) before it returns.
	Durable Durability = iota
	// Relaxed: commits return before their fsync; a crash may lose the
	// latest ones but not corrupt the store.
	Relaxed
)

func (d Durability) String() string {
	if d == Relaxed {
		return "relaxed"
	}
	return "durable"
}

// Config opens a driver.
type Config struct {
	Dir        string     // an empty directory the engine owns (reused on reopen)
	Durability Durability // see Durability
	CacheBytes int64      // the engine's own cache budget, where it has one
	Threads    int        // client threads that will use the DB
}

// Driver opens one engine.
type Driver struct {
	Name string
	// CacheNote says how CacheBytes is spent (for the report).
	CacheNote string
	Open      func(cfg Config) (DB, error)
}

// ErrUnavailable: the engine cannot run here (e.g. PostgreSQL not
// installed); the run skips it.
var ErrUnavailable = errors.New("ycsb: engine unavailable")
