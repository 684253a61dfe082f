package vfs

import (
	"fmt"
	"strings"
	"syscall"
)

// Op is a kind of operation an Injection can fail.
type Op int

const (
	OpRead     Op = iota // File.ReadAt
	OpWrite              // File.WriteAt
	OpSync               // File.Sync
	OpSyncDir            // FS.SyncDir (Path is the directory)
	OpCreate             // FS.Create
	OpRename             // FS.Rename (Path may match either name)
	OpRemove             // FS.Remove
	OpTruncate           // File.Truncate
)

var opNames = [...]string{"read", "write", "sync", "syncdir", "create", "rename", "remove", "truncate"}

func (op Op) String() string {
	if op >= 0 && int(op) < len(opNames) {
		return opNames[op]
	}
	return fmt.Sprintf("Op(%d)", int(op))
}

// Injection is a rule that makes an operation fail.
type Injection struct {
	// Op is the kind of operation that fails.
	Op Op
	// Path is the file (or directory, for OpSyncDir) the rule matches,
	// cleaned like every MemFS path; "" matches all, and a Path ending in
	// "/" matches everything below that directory. A File matches by the
	// name it was opened with.
	Path string
	// Nth says which matching operation, counted from when the rule was
	// added, fails: 1 is the next one. Values below 1 act as 1.
	Nth int
	// Persistent makes every matching operation after the Nth fail too.
	Persistent bool
	// Err is the cause returned; nil means syscall.EIO. The returned error
	// matches both Err and ErrInjected.
	Err error
}

// rule is an Injection with its path prepared and its count of matches.
type rule struct {
	inj    Injection
	path   string // cleaned; ends in "/" for a prefix; "" for any
	prefix bool
	seen   int
}

func (r *rule) matches(p string) bool {
	switch {
	case r.path == "":
		return true
	case r.prefix:
		return strings.HasPrefix(p, r.path)
	}
	return p == r.path
}

// InjectError adds a rule. A failed operation changes nothing, except that a
// failed Sync loses the file's unsynced writes (doc.go, rule 3): they stay
// visible to reads but no later Sync makes them durable.
func (m *MemFS) InjectError(inj Injection) {
	r := &rule{inj: inj}
	if r.inj.Nth < 1 {
		r.inj.Nth = 1
	}
	if r.inj.Err == nil {
		r.inj.Err = syscall.EIO
	}
	switch {
	case inj.Path == "":
	case strings.HasSuffix(inj.Path, "/"):
		r.path, r.prefix = clean(inj.Path), true
		if r.path != "/" {
			r.path += "/"
		}
	default:
		r.path = clean(inj.Path)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.rules = append(m.mu.rules, r)
}

// ClearInjections removes all rules.
func (m *MemFS) ClearInjections() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.rules = nil
}

// injectLocked counts op on the cleaned paths p (and q, for a rename) against
// every rule and returns the error of the first rule that fires, or nil.
// It is called once an operation has been found valid, just before it would
// change anything.
func (m *MemFS) injectLocked(op Op, p, q string) error {
	var fired *rule
	for _, r := range m.mu.rules {
		if r.inj.Op != op || !(r.matches(p) || q != "" && r.matches(q)) {
			continue
		}
		r.seen++
		if fired == nil && (r.seen == r.inj.Nth || r.inj.Persistent && r.seen > r.inj.Nth) {
			fired = r
		}
	}
	if fired == nil {
		return nil
	}
	return injectedError{err: fired.inj.Err}
}

// SetSpaceLimit caps the sum of the current sizes of all files that have a
// name. A WriteAt or Truncate that would grow that sum beyond the limit fails
// with an error matching syscall.ENOSPC and changes nothing. bytes <= 0
// removes the limit.
func (m *MemFS) SetSpaceLimit(bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.limit = bytes
}

// reserveLocked fails with ENOSPC if growing ino to size would pass the
// space limit.
func (m *MemFS) reserveLocked(ino *inode, size int64) error {
	grow := size - int64(len(ino.data))
	if m.mu.limit <= 0 || grow <= 0 {
		return nil
	}
	if usedBytes(m.mu.root, map[*inode]bool{})+grow > m.mu.limit {
		return syscall.ENOSPC
	}
	return nil
}

// usedBytes sums the current sizes of the files below d that are not in
// seen, and adds them to seen.
func usedBytes(d *dirNode, seen map[*inode]bool) int64 {
	var n int64
	for _, e := range d.cur {
		switch e := e.(type) {
		case *inode:
			if !seen[e] {
				seen[e] = true
				n += int64(len(e.data))
			}
		case *dirNode:
			n += usedBytes(e, seen)
		}
	}
	return n
}
