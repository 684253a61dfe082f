package kv

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzCatalogEntry: a catalog value from disk decodes to relations or to
// ErrCorrupt, and what decodes encodes back the same.
func FuzzCatalogEntry(f *testing.F) {
	f.Add(encodeCatalogEntry(16, 17))
	f.Add(encodeCatalogEntry(0xfffffffe, 0xffffffff))
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, i, err := decodeCatalogEntry(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error without ErrCorrupt: %v", err)
			}
			return
		}
		if got := encodeCatalogEntry(h, i); !bytes.Equal(got, b) {
			t.Fatalf("decode(%x) = %d, %d; encodes as %x", b, h, i, got)
		}
	})
}
