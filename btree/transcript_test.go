package btree

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
)

// TestSplitTranscript runs testdata/split: keys in, page dump out.
//
//	new                      a fresh tree (a leaf root in block 1)
//	insert [len=N] [pre=N]   insert the input lines as keys
//	insert-seq n=N [from=N] [order=asc|desc|shuffle] [len=N] [pre=N]
//	                         insert keys k0001 ... in the order given
//	dump                     every page, level by level, left to right
//	check                    Check
//
// A key is its name after pre dots and before dots up to len bytes, so
// that keys are long enough to split pages after a few of them; the dump
// writes it back as its name with the padding counted: ".900|k0001|.90".
// Each key maps to TID (1, its insert number).
func TestSplitTranscript(t *testing.T) {
	var (
		e  *env
		tr *Tree
		n  int
	)
	defer func() {
		if e != nil {
			e.close(t)
		}
	}()
	insert := func(c *testutil.Case, name string) string {
		k := padKey(name, c.Int(t, "pre", 0), c.Int(t, "len", 0))
		n++
		if _, ok, err := tr.Insert(k, base.TID{Block: 1, Offset: uint16(n)}); err != nil || !ok {
			return fmt.Sprintf("insert %s: %v %v\n", name, ok, err)
		}
		return ""
	}
	testutil.RunTranscript(t, "testdata/split", func(t *testing.T, c *testutil.Case) string {
		if c.Cmd != "new" && tr == nil {
			t.Fatalf("%s: %s before new", c.Pos, c.Cmd)
		}
		var out strings.Builder
		switch c.Cmd {
		case "new":
			if e != nil {
				e.close(t)
			}
			e = openEnv(t, vfs.NewMemFS(), testDir, 64*8192, smallWAL())
			var err error
			if tr, err = Create(e.pool, e.wal, testRel); err != nil {
				t.Fatal(err)
			}
			n = 0
		case "insert":
			for _, l := range c.InputLines() {
				out.WriteString(insert(c, l))
			}
		case "insert-seq":
			keys := make([]string, c.Int(t, "n", 0))
			from := c.Int(t, "from", 1)
			for i := range keys {
				keys[i] = fmt.Sprintf("k%04d", from+i)
			}
			switch o := c.Str("order", "asc"); o {
			case "asc":
			case "desc":
				for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
					keys[i], keys[j] = keys[j], keys[i]
				}
			case "shuffle":
				rand.New(rand.NewPCG(1, 2)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			default:
				t.Fatalf("%s: order %q", c.Pos, o)
			}
			for _, k := range keys {
				out.WriteString(insert(c, k))
			}
		case "dump":
			out.WriteString(dumpTree(t, tr))
		case "check":
			if err := Check(e.pool, testRel); err != nil {
				return err.Error()
			}
			return "ok"
		default:
			t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		}
		return out.String()
	})
}

// padKey makes the key name with pre dots before it and dots after it up
// to n bytes.
func padKey(name string, pre, n int) []byte {
	k := strings.Repeat(".", pre) + name
	if len(k) < n {
		k += strings.Repeat(".", n-len(k))
	}
	return []byte(k)
}

// showKey writes a key made by padKey back as its name, with the runs of
// dots before and after it counted.
func showKey(k []byte) string {
	s := string(k)
	name := strings.Trim(s, ".")
	pre := strings.Index(s, name)
	if name == "" {
		pre = 0
	}
	post := len(s) - pre - len(name)
	out := name
	if pre > 0 {
		out = fmt.Sprintf(".%d|%s", pre, out)
	}
	if post > 0 {
		out = fmt.Sprintf("%s|.%d", out, post)
	}
	if out == "" {
		return `""`
	}
	return out
}

// dumpTree writes the metapage and then every page of every level from
// the root down, each level left to right along the right-links: block,
// links, free bytes, high key and items (leaf: key@tid offset; internal:
// separator->child, the first separator "" for minus infinity).
func dumpTree(t *testing.T, tr *Tree) string {
	t.Helper()
	var out strings.Builder
	root, level, err := tr.readMeta()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&out, "meta: root %d level %d\n", root, level)
	blk := root
	for lvl := level; lvl >= 0; lvl-- {
		// Go left from the root's level down: the leftmost page of the next
		// level is the first downlink of this level's leftmost page.
		next := base.InvalidBlock
		for b := blk; b != base.InvalidBlock; {
			buf, err := tr.lock(b, shareLock)
			if err != nil {
				t.Fatal(err)
			}
			p := page(buf.Page())
			flags := []string{"internal"}
			if p.isLeaf() {
				flags[0] = "leaf"
			}
			if p.isRoot() {
				flags = append(flags, "root")
			}
			fmt.Fprintf(&out, "block %d level %d %s: left %s right %s free %d\n",
				b, p.level(), strings.Join(flags, ","), showBlock(p.left()), showBlock(p.right()), p.freeSpace())
			fd := p.firstData()
			if fd == 1 {
				fmt.Fprintf(&out, "  high %s\n", showKey(p.highKey()))
			}
			var items []string
			for i := fd; i < p.nItems(); i++ {
				k, tid, ok := p.entry(i)
				if !ok {
					t.Fatalf("block %d item %d damaged", b, i)
				}
				if p.isLeaf() {
					items = append(items, fmt.Sprintf("%s@%d", showKey(k), tid.Offset))
				} else {
					items = append(items, fmt.Sprintf("%s->%d", showKey(k), tid.Block))
					if next == base.InvalidBlock {
						next = tid.Block
					}
				}
			}
			for len(items) > 0 {
				m := min(len(items), 6)
				fmt.Fprintf(&out, "  %s\n", strings.Join(items[:m], " "))
				items = items[m:]
			}
			b = p.right()
			unlock(buf, shareLock)
		}
		blk = next
	}
	return out.String()
}

func showBlock(b base.BlockNum) string {
	if b == base.InvalidBlock {
		return "-"
	}
	return fmt.Sprint(b)
}
