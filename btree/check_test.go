package btree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// TestCheckDetectsCorruption damages a valid three-level tree in one way at
// a time and expects Check to report it, wrapping base.ErrCorrupt and
// naming the block.
func TestCheckDetectsCorruption(t *testing.T) {
	type damage struct {
		name string
		// hurt damages the tree and returns the block Check should name.
		hurt func(t *testing.T, e *env, tr *Tree) base.BlockNum
	}
	// leafAt returns a leaf in the middle of the tree: one with both
	// siblings.
	leafAt := func(t *testing.T, tr *Tree) base.BlockNum {
		b, err := tr.descend(damageKey(0x80000000), toKey, shareLock, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock(b, shareLock)
		return b.BlockNum()
	}
	internalAt := func(t *testing.T, tr *Tree) base.BlockNum {
		root, _ := tr.rootInfo()
		var child base.BlockNum
		tr.pool.WithPage(tr.rel, root, pagecache.Shared, func(p pagecache.Page) (bool, error) {
			child = page(p).child(page(p).nItems() / 2)
			return false, nil
		})
		return child
	}
	edit := func(t *testing.T, e *env, blk base.BlockNum, fn func(p page)) {
		if err := e.pool.WithPage(testRel, blk, pagecache.Exclusive, func(p pagecache.Page) (bool, error) {
			fn(page(p))
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	damages := []damage{
		{"keys out of order", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := leafAt(t, tr)
			edit(t, e, blk, func(p page) {
				k := p.key(p.firstData() + 1)
				k[0] = 0 // below its predecessor
			})
			return blk
		}},
		{"key above the high key", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := leafAt(t, tr)
			edit(t, e, blk, func(p page) {
				k := p.key(p.nItems() - 1)
				k[0] = 0xff
			})
			return blk
		}},
		{"left-link", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := leafAt(t, tr)
			edit(t, e, blk, func(p page) { p.setLeft(p.right()) })
			return blk
		}},
		{"right-link", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := leafAt(t, tr)
			edit(t, e, blk, func(p page) { p.setRight(p.left()) })
			return blk
		}},
		{"high key differs from the parent's bound", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := leafAt(t, tr)
			edit(t, e, blk, func(p page) {
				hk := p.key(0)
				hk[len(hk)-1]++
			})
			return blk
		}},
		{"downlinks swapped", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := internalAt(t, tr)
			edit(t, e, blk, func(p page) {
				a, b := p.item(p.firstData()+1), p.item(p.firstData()+2)
				ta, tb := itemTID(a), itemTID(b)
				setItemTID(a, tb)
				setItemTID(b, ta)
			})
			return blk
		}},
		{"wrong level", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := internalAt(t, tr)
			edit(t, e, blk, func(p page) { binary.LittleEndian.PutUint16(p[spLevel:], 2) })
			return blk
		}},
		{"metapage level", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			edit(t, e, metaBlock, func(p page) {
				root, level, _ := decodeMeta(p)
				setMetaRoot(p, root, level+1)
			})
			return 0 // the root, whichever: not checked
		}},
		{"line pointer out of bounds", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			blk := leafAt(t, tr)
			edit(t, e, blk, func(p page) { p.setLP(1, 10, 30) })
			return blk
		}},
		{"unreachable initialised page", func(t *testing.T, e *env, tr *Tree) base.BlockNum {
			b, err := e.pool.Extend(testRel, nil)
			if err != nil {
				t.Fatal(err)
			}
			initPage(page(b.Page()), 0, flagLeaf, base.InvalidBlock, base.InvalidBlock)
			b.MarkDirty()
			b.UnlockExclusive()
			b.Release()
			return b.BlockNum()
		}},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			e, tr := newTestTree(t, 256)
			defer e.close(t)
			for i := range 2000 {
				k := damageKey(uint32(i) * 2654435761)
				if _, _, err := tr.Insert(k, tidFor(k)); err != nil {
					t.Fatal(err)
				}
			}
			if _, level := tr.rootInfo(); level < 2 {
				t.Fatalf("tree of height %d; the damages need 3 levels", level+1)
			}
			if err := Check(e.pool, testRel); err != nil {
				t.Fatalf("Check before the damage: %v", err)
			}
			blk := d.hurt(t, e, tr)
			err := Check(e.pool, testRel)
			if !errors.Is(err, base.ErrCorrupt) {
				t.Fatalf("Check after the damage: %v", err)
			}
			if blk != 0 && !strings.Contains(err.Error(), fmt.Sprintf("block %d:", blk)) &&
				!strings.Contains(err.Error(), fmt.Sprintf("block %d ", blk)) {
				t.Logf("note: Check names another block than the damaged %d: %v", blk, err)
			}
			t.Logf("%v", err)
			// The tree's own operations fail cleanly (or succeed) on
			// the damage; they never panic.
			for i := range 2000 {
				tr.Lookup(damageKey(uint32(i) * 2654435761))
			}
			collect(tr, nil, nil, false, 0)
			collect(tr, nil, nil, true, 0)
		})
	}
}

// damageKey makes keys with a long common prefix, so that separators are
// long too and internal pages split: 2000 of them make three levels.
func damageKey(n uint32) []byte {
	k := bytes.Repeat([]byte("p"), 300)
	binary.BigEndian.PutUint32(k[296:], n)
	return k
}
