package heap

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// maxCheckReports bounds the problems Check reports, and maxPageReports
// those of one page (a page that bad is not worth listing in full).
const (
	maxCheckReports = 100
	maxPageReports  = 16
)

// Check verifies heap relation rel the way amcheck's verify_heapam does,
// reading every page through a BulkRead ring:
//
//   - every page is new (all zero) or has a sane header;
//   - line pointers have known flags, and unused and dead ones are empty;
//   - every normal line pointer lies in the tuple space, aligned, and no two
//     tuples overlap;
//   - every tuple's lengths add up to its line pointer's, its infomask has
//     only known bits, and its kind matches its page (chunks only on TOAST
//     pages, row versions only on the others);
//   - every previous-version TID points at a row version of the same key;
//   - every TOAST pointer leads to a chain of exactly its number of chunks,
//     owned by the same transaction, whose lengths add up to its length.
//
// TOAST chunks that no pointer reaches are allowed: they are the leftovers
// of inserts that failed or crashed between their chunks and their row
// version, and of prunes that could not lock a chunk's page; vacuum frees
// them. Check reads pages under share locks and may run alongside other
// work, but only a quiet relation gives a consistent answer. It returns nil,
// an I/O error, or the problems found joined, each wrapping base.ErrCorrupt
// and naming block and offset.
func Check(pool *pagecache.Pool, rel base.RelFileNode) error {
	nblocks, err := pool.Storage().NBlocks(rel)
	if err != nil {
		return err
	}
	c := &checker{
		rel:    rel,
		rows:   map[base.TID]uint64{},
		chunks: map[base.TID]chunkInfo{},
	}
	strategy := pool.NewStrategy(pagecache.BulkRead)
	for blk := range nblocks {
		b, err := pool.ReadBuffer(rel, blk, pagecache.ReadNormal, strategy)
		if err != nil {
			if errors.Is(err, base.ErrCorrupt) {
				c.errs = append(c.errs, fmt.Errorf("heap: relation %d block %d: %w", rel, blk, err))
				continue
			}
			return fmt.Errorf("heap: check relation %d block %d: %w", rel, blk, err)
		}
		b.LockShare()
		c.page(b.Page(), blk)
		b.UnlockShare()
		b.Release()
	}
	c.links()
	return c.result()
}

type chunkInfo struct {
	off, n int
	prev   base.TID
	xmin   base.XID
}

type rowLink struct {
	at, prev base.TID
	key      uint64
}

type toastOwner struct {
	at   base.TID
	ptr  toastPointer
	xmin base.XID
}

// checker collects what Check finds.
type checker struct {
	rel    base.RelFileNode
	rows   map[base.TID]uint64 // row versions: TID -> hash of key
	prevs  []rowLink
	chunks map[base.TID]chunkInfo
	owners []toastOwner
	errs   []error
	nerrs  int
}

func (c *checker) report(blk base.BlockNum, off int, format string, args ...any) {
	c.nerrs++
	if len(c.errs) < maxCheckReports {
		c.errs = append(c.errs, base.CorruptionErrorf("heap: relation %d block %d offset %d: %s", c.rel, blk, off, fmt.Sprintf(format, args...)))
	}
}

func (c *checker) reportErr(blk base.BlockNum, off int, err error) {
	c.report(blk, off, "%v", err)
}

func (c *checker) result() error {
	if c.nerrs > len(c.errs) {
		c.errs = append(c.errs, fmt.Errorf("heap: relation %d: %d more problems not listed: %w", c.rel, c.nerrs-len(c.errs), base.ErrCorrupt))
	}
	return errors.Join(c.errs...)
}

func keyHash(k []byte) uint64 {
	h := fnv.New64a()
	h.Write(k)
	return h.Sum64()
}

// page checks one page (share-locked, or private) and records its tuples.
// It never panics, whatever the bytes.
func (c *checker) page(p pagecache.Page, blk base.BlockNum) {
	if p.IsNew() {
		return
	}
	if err := checkHeader(p); err != nil {
		c.reportErr(blk, 0, err)
		return
	}
	toast := isToastPage(p)
	type span struct{ off, end, i int }
	var spans []span
	start := c.nerrs
	for i := 1; i <= numLP(p); i++ {
		if c.nerrs-start >= maxPageReports {
			c.report(blk, i, "too many problems on this page; the rest of it is not checked")
			return
		}
		lp := getLP(p, i)
		switch lpFlags(lp) {
		case lpUnused, lpDead:
			if lpOff(lp) != 0 || lpLen(lp) != 0 {
				c.report(blk, i, "line pointer with flags %d has offset %d and length %d", lpFlags(lp), lpOff(lp), lpLen(lp))
			}
			continue
		}
		off, n, ok, err := tupleAt(p, i)
		if err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("line pointer flags %d", lpFlags(lp))
			}
			c.reportErr(blk, i, err)
			continue
		}
		spans = append(spans, span{off, off + align8(n), i})
		hdr, err := readTupleHdr(p, off, n)
		if err != nil {
			c.reportErr(blk, i, err)
			continue
		}
		tid := base.TID{Block: blk, Offset: uint16(i)}
		body := p[off+tupleHeaderSize : off+n]
		if hdr.isChunk() {
			if !toast {
				c.report(blk, i, "TOAST chunk on a heap page")
				continue
			}
			c.chunks[tid] = chunkInfo{
				off:  int(uint32(body[0]) | uint32(body[1])<<8 | uint32(body[2])<<16 | uint32(body[3])<<24),
				n:    hdr.vlen,
				prev: hdr.prev,
				xmin: hdr.xmin,
			}
			continue
		}
		if toast {
			c.report(blk, i, "row version on a TOAST page")
			continue
		}
		k := keyHash(body[:hdr.klen])
		c.rows[tid] = k
		if hdr.prev.Valid() {
			c.prevs = append(c.prevs, rowLink{at: tid, prev: hdr.prev, key: k})
		} else if hdr.prev != base.InvalidTID {
			c.report(blk, i, "previous-version TID %v is neither valid nor InvalidTID", hdr.prev)
		}
		if hdr.mask&maskExternal != 0 {
			ptr, err := decodeToastPointer(body[hdr.klen:])
			if err != nil {
				c.reportErr(blk, i, err)
				continue
			}
			if hdr.mask&maskCompressed == 0 && ptr.rawLen != ptr.extLen {
				c.report(blk, i, "uncompressed TOAST value with lengths %d/%d", ptr.rawLen, ptr.extLen)
			}
			c.owners = append(c.owners, toastOwner{at: tid, ptr: ptr, xmin: hdr.xmin})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	for j := 1; j < len(spans); j++ {
		if spans[j].off < spans[j-1].end {
			c.report(blk, spans[j].i, "tuple at %d overlaps the tuple of line pointer %d", spans[j].off, spans[j-1].i)
		}
	}
}

// links checks the previous-version links and the TOAST chains.
func (c *checker) links() {
	for _, l := range c.prevs {
		k, ok := c.rows[l.prev]
		switch {
		case !ok:
			c.report(l.at.Block, int(l.at.Offset), "previous version %v is not a row version", l.prev)
		case k != l.key:
			c.report(l.at.Block, int(l.at.Offset), "previous version %v holds another key", l.prev)
		}
	}
	for _, o := range c.owners {
		end := int(o.ptr.extLen)
		tid := o.ptr.last
		var count uint32
		for tid.Valid() {
			count++
			ch, ok := c.chunks[tid]
			if !ok || count > o.ptr.nchunks {
				c.report(o.at.Block, int(o.at.Offset), "TOAST chunk %d of %d at %v is missing", count, o.ptr.nchunks, tid)
				break
			}
			if ch.xmin != o.xmin || ch.off+ch.n != end || (count > 1 && ch.n != chunkData) {
				c.report(o.at.Block, int(o.at.Offset), "TOAST chunk at %v (xmin %d, bytes %d+%d) does not continue the value (xmin %d, end %d)", tid, ch.xmin, ch.off, ch.n, o.xmin, end)
				break
			}
			end, tid = ch.off, ch.prev
		}
		if !tid.Valid() && (end != 0 || count != o.ptr.nchunks) {
			c.report(o.at.Block, int(o.at.Offset), "TOAST value has %d chunks and %d bytes short; pointer says %d chunks", count, end, o.ptr.nchunks)
		}
	}
}
