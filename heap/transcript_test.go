package heap

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
)

// TestPruneTranscript runs testdata/prune: inserts, commits and aborts,
// Prune, and dumps of the page.
//
//	new                     a fresh heap
//	insert                  one line per version: xid key value-length
//	                        [prev=key] (the version of key inserted last
//	                        before it); prints each TID
//	commit xids=(...)       mark transactions committed in the commit log
//	abort xids=(...)        mark them aborted
//	prune [blk=N]           Prune block N (default 0); prints the result
//	dump [blk=N]            the page header and every line pointer
//	fetch                   Fetch each input line's key's last TID
//
// Values are random bytes (incompressible) from a generator seeded by the
// key and length, so that the same transcript builds the same pages.
func TestPruneTranscript(t *testing.T) {
	var (
		e    *env
		last map[string]base.TID
	)
	defer func() {
		if e != nil {
			e.mustClose(t)
		}
	}()
	testutil.RunTranscript(t, "testdata/prune", func(t *testing.T, c *testutil.Case) string {
		if c.Cmd != "new" && e == nil {
			t.Fatalf("%s: %s before new", c.Pos, c.Cmd)
		}
		var out strings.Builder
		switch c.Cmd {
		case "new":
			if e != nil {
				e.mustClose(t)
			}
			e = openEnv(t, vfs.NewMemFS(), envConfig{})
			last = map[string]base.TID{}
		case "insert":
			for _, l := range c.InputLines() {
				f := strings.Fields(l)
				if len(f) < 3 {
					t.Fatalf("%s: insert %q: want xid key length [prev=key]", c.Pos, l)
				}
				xid, err1 := strconv.ParseUint(f[0], 10, 64)
				n, err2 := strconv.Atoi(f[2])
				if err1 != nil || err2 != nil {
					t.Fatalf("%s: insert %q: %v %v", c.Pos, l, err1, err2)
				}
				prev := base.InvalidTID
				if len(f) > 3 {
					pk, ok := strings.CutPrefix(f[3], "prev=")
					if prev, ok = last[pk]; !ok {
						t.Fatalf("%s: insert %q: no version of %q yet", c.Pos, l, pk)
					}
				}
				rng := rand.New(rand.NewPCG(uint64(len(f[1])), uint64(n)))
				tid, err := e.h.Insert(base.XID(xid), []byte(f[1]), randBytes(rng, n), prev)
				if err != nil {
					fmt.Fprintf(&out, "%s: %v\n", f[1], err)
					continue
				}
				last[f[1]] = tid
				fmt.Fprintf(&out, "%s xid %d: %s\n", f[1], xid, showTID(tid))
			}
		case "commit", "abort":
			st := txn.Committed
			if c.Cmd == "abort" {
				st = txn.Aborted
			}
			for _, v := range c.Vals("xids") {
				x, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					t.Fatalf("%s: xid %q: %v", c.Pos, v, err)
				}
				e.clog.set(base.XID(x), st, true)
			}
		case "prune":
			res, err := e.h.Prune(base.BlockNum(c.Int(t, "blk", 0)))
			if err != nil {
				return "error: " + err.Error()
			}
			fmt.Fprintf(&out, "dead %d stubs %d freed %d chunks %d chunks-busy %d busy %v\n",
				res.Dead, res.Stubs, res.Freed, res.Chunks, res.ChunksBusy, res.Busy)
		case "dump":
			out.WriteString(dumpHeapPage(t, e, base.BlockNum(c.Int(t, "blk", 0))))
		case "fetch":
			for _, k := range c.InputLines() {
				tid, ok := last[k]
				if !ok {
					t.Fatalf("%s: fetch: no version of %q", c.Pos, k)
				}
				tup, err := e.h.Fetch(tid)
				switch {
				case err != nil:
					fmt.Fprintf(&out, "%s %s: %v\n", k, showTID(tid), err)
				default:
					fmt.Fprintf(&out, "%s %s: key %s xmin %d prev %s stub %v external %v value %d bytes\n",
						k, showTID(tid), tup.Key, tup.XMin, showTID(tup.Prev), tup.Stub, tup.External, len(tup.Value))
				}
			}
		default:
			t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		}
		return out.String()
	})
}

func showTID(tid base.TID) string {
	if !tid.Valid() {
		return "-"
	}
	return fmt.Sprintf("(%d,%d)", tid.Block, tid.Offset)
}

// dumpHeapPage writes block blk's header (lower, upper, free space, flags)
// and its line pointers: unused, dead, or the tuple's place, xmin, xmax,
// infomask bits, key, value length and prev link.
func dumpHeapPage(t *testing.T, e *env, blk base.BlockNum) string {
	t.Helper()
	b, err := e.pool.ReadBuffer(testRel, blk, pagecache.ReadNormal, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.LockShare()
	defer func() {
		b.UnlockShare()
		b.Release()
	}()
	p := b.Page()
	var out strings.Builder
	var flags []string
	if isToastPage(p) {
		flags = append(flags, "toast")
	}
	if p.Flags()&flagHasFreeLines != 0 {
		flags = append(flags, "free-lines")
	}
	fmt.Fprintf(&out, "block %d: lower %d upper %d free %d flags [%s]\n",
		blk, p.Lower(), p.Upper(), freeSpace(p), strings.Join(flags, " "))
	for i := 1; i <= numLP(p); i++ {
		lp := getLP(p, i)
		switch lpFlags(lp) {
		case lpUnused:
			fmt.Fprintf(&out, "  %d: unused\n", i)
			continue
		case lpDead:
			fmt.Fprintf(&out, "  %d: dead\n", i)
			continue
		}
		off, n := lpOff(lp), lpLen(lp)
		h, err := decodeTupleHdr(p[off : off+n])
		if err != nil {
			fmt.Fprintf(&out, "  %d: at %d len %d: %v\n", i, off, n, err)
			continue
		}
		key := p[off+tupleHeaderSize : off+tupleHeaderSize+h.klen]
		if h.isChunk() {
			key = []byte(fmt.Sprintf("chunk@%d", uint32(key[0])|uint32(key[1])<<8|uint32(key[2])<<16|uint32(key[3])<<24))
		}
		fmt.Fprintf(&out, "  %d: at %d len %d xmin %d xmax %d mask [%s] key %s value %d prev %s\n",
			i, off, n, h.xmin, h.xmax, showMask(h.mask), key, h.vlen, showTID(h.prev))
	}
	return out.String()
}

// showMask names the infomask bits set.
func showMask(m uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{
		{uint32(txn.XMinCommitted), "xmin-committed"},
		{uint32(txn.XMinInvalid), "xmin-invalid"},
		{uint32(txn.XMaxCommitted), "xmax-committed"},
		{uint32(txn.XMaxInvalid), "xmax-invalid"},
		{uint32(txn.XMaxLockOnly), "xmax-lock-only"},
		{maskCompressed, "compressed"},
		{maskExternal, "external"},
		{maskChunk, "chunk"},
		{maskStub, "stub"},
	}
	var s []string
	for _, n := range names {
		if m&n.bit != 0 {
			s = append(s, n.name)
			m &^= n.bit
		}
	}
	if m != 0 {
		s = append(s, fmt.Sprintf("%#x", m))
	}
	return strings.Join(s, " ")
}
