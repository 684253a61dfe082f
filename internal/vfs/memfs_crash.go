package vfs

import (
	"io/fs"
	"maps"
	"math/rand/v2"
	"slices"
	"syscall"
)

// CrashOptions says what survives MemFS.Crash. The zero value keeps nothing
// that was not made durable. Probabilities outside [0,1] act as 0 or 1.
type CrashOptions struct {
	// Seed seeds every random choice: the same seed after the same history
	// gives the same result.
	Seed int64
	// KeepUnsynced is the probability that each unsynced write or truncate
	// survives whole. Default 0: all are dropped.
	KeepUnsynced float64
	// TearProbability is the probability that an unsynced write that was not
	// kept survives torn: its first k*512 bytes for k uniform in
	// [1, ceil(len/512)-1], so at least one sector and never the whole write.
	// Writes of 512 bytes or less cannot tear. Default 0.
	TearProbability float64
	// KeepUnsyncedDirOps is the probability that each create, rename or
	// remove not yet made durable by SyncDir survives. Default 0.
	KeepUnsyncedDirOps float64
}

// Crash turns m, in place, into a state a power loss could leave behind:
// each directory and file gets its durable state plus the pending operations
// that opts and its seed keep. Open Files become unusable (their methods
// return ErrCrashed) and all locks are released, as the process died; m
// itself stays usable. Injections and the space limit stay as they are.
func (m *MemFS) Crash(opts CrashOptions) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x6865617070))
	keep := func(p float64) bool { return rng.Float64() < p }

	// Directories, breadth first from the root and children by name, so the
	// random draws come in an order fixed by the history. A directory may be
	// reached under two names (renames a->b->c with only the second kept).
	var order []*dirNode
	queue := []*dirNode{m.mu.root}
	reached := map[*dirNode]bool{m.mu.root: true}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		order = append(order, d)
		img := maps.Clone(d.durable)
		for _, op := range d.pending {
			if op.forced || keep(opts.KeepUnsyncedDirOps) {
				op.applyTo(img)
			}
		}
		d.cur, d.durable, d.pending = img, maps.Clone(img), nil
		for _, name := range slices.Sorted(maps.Keys(img)) {
			if sub, ok := img[name].(*dirNode); ok && !reached[sub] {
				reached[sub] = true
				queue = append(queue, sub)
			}
		}
	}

	// Files, in the order they are first reached.
	seen := map[*inode]bool{}
	for _, d := range order {
		for _, name := range slices.Sorted(maps.Keys(d.cur)) {
			ino, ok := d.cur[name].(*inode)
			if !ok || seen[ino] {
				continue
			}
			seen[ino] = true
			img := slices.Clone(ino.durable)
			for _, op := range ino.pending {
				if keep(opts.KeepUnsynced) {
					img = op.applyTo(img)
					continue
				}
				if op.truncate {
					continue
				}
				maxK := (len(op.data) - 1) / sectorSize
				if maxK >= 1 && keep(opts.TearProbability) {
					k := 1 + rng.IntN(maxK)
					if end := op.off + int64(len(op.data)); end > int64(len(img)) {
						img = resize(img, end)
					}
					copy(img[op.off:], op.data[:k*sectorSize])
				}
			}
			ino.data, ino.durable, ino.pending = img, slices.Clone(img), nil
		}
	}

	m.mu.epoch++
	m.mu.locks = map[string]*memLock{}
}

// Clone returns a deep copy of m's files and directories, including what is
// durable and what is pending, and of its space limit. The copy has no open
// Files, locks or injections, and zero Stats. Crashing or changing either
// leaves the other alone.
func (m *MemFS) Clone() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := cloner{dirs: map[*dirNode]*dirNode{}, inodes: map[*inode]*inode{}}
	n := NewMemFS()
	n.mu.root = c.dir(m.mu.root)
	n.mu.limit = m.mu.limit
	return n
}

// cloner deep-copies a tree, keeping nodes that are shared (a file that a
// pending rename will add to a second directory) shared in the copy.
type cloner struct {
	dirs   map[*dirNode]*dirNode
	inodes map[*inode]*inode
}

func (c *cloner) node(n node) node {
	switch n := n.(type) {
	case *dirNode:
		return c.dir(n)
	case *inode:
		return c.inode(n)
	}
	return nil
}

func (c *cloner) entries(m map[string]node) map[string]node {
	out := make(map[string]node, len(m))
	for name, n := range m {
		out[name] = c.node(n)
	}
	return out
}

func (c *cloner) dir(d *dirNode) *dirNode {
	if nd, ok := c.dirs[d]; ok {
		return nd
	}
	nd := &dirNode{mode: d.mode}
	c.dirs[d] = nd
	nd.cur = c.entries(d.cur)
	nd.durable = c.entries(d.durable)
	for _, op := range d.pending {
		op.node = c.node(op.node)
		nd.pending = append(nd.pending, op)
	}
	return nd
}

func (c *cloner) inode(ino *inode) *inode {
	if ni, ok := c.inodes[ino]; ok {
		return ni
	}
	ni := &inode{
		data:    slices.Clone(ino.data),
		durable: slices.Clone(ino.durable),
		pending: slices.Clone(ino.pending),
		mode:    ino.mode,
	}
	c.inodes[ino] = ni
	return ni
}

// CorruptByte XORs the byte at off of the named file with xor, in what reads
// see and in what the disk holds, as bit rot would. An unsynced write over
// off that a later crash keeps overwrites the damage, as rewriting the
// sector would. off must lie within the file's current size.
func (m *MemFS) CorruptByte(name string, off int64, xor byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.fileLocked(clean(name))
	if err != nil {
		return &fs.PathError{Op: "corrupt", Path: name, Err: err}
	}
	if off < 0 || off >= int64(len(ino.data)) {
		return &fs.PathError{Op: "corrupt", Path: name, Err: syscall.EINVAL}
	}
	ino.data[off] ^= xor
	if off < int64(len(ino.durable)) {
		ino.durable[off] ^= xor
	}
	return nil
}
