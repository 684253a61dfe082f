package pagecache

import (
	"testing"
	"unsafe"

	"github.com/heapkv/heapkv/internal/base"
)

func TestDescriptorFillsOneCacheLine(t *testing.T) {
	if s := unsafe.Sizeof(bufferDesc{}); s != 64 {
		t.Fatalf("bufferDesc is %d bytes, want 64", s)
	}
}

func TestPageVerify(t *testing.T) {
	initPage := func() Page {
		p := make(Page, BlockSize)
		p.Init(16)
		p.SetLSN(0x1234)
		p[100] = 7
		return p
	}
	tests := []struct {
		name      string
		page      func() Page
		blk       uint32
		checksums bool
		want      bool
	}{
		{"all zero page is new and valid", func() Page { return make(Page, BlockSize) }, 3, true, true},
		{"checksummed page", func() Page { p := initPage(); p.SetChecksum(3); return p }, 3, true, true},
		{"checksum of another block", func() Page { p := initPage(); p.SetChecksum(4); return p }, 3, true, false},
		{"flipped byte in body", func() Page { p := initPage(); p.SetChecksum(3); p[5000] ^= 1; return p }, 3, true, false},
		{"flipped bit in LSN", func() Page { p := initPage(); p.SetChecksum(3); p[0] ^= 0x80; return p }, 3, true, false},
		{"flipped byte, checksums off", func() Page { p := initPage(); p.SetChecksum(3); p[5000] ^= 1; return p }, 3, false, true},
		{"zero header but data in body", func() Page { p := make(Page, BlockSize); p[4000] = 1; return p }, 3, true, false},
		{"lower past upper", func() Page { p := initPage(); p.SetLower(9000); p.SetChecksum(3); return p }, 3, false, false},
		{"short page", func() Page { return make(Page, 100) }, 3, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.page().Verify(blockNum(tt.blk), tt.checksums); got != tt.want {
				t.Fatalf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPageInit(t *testing.T) {
	p := make(Page, BlockSize)
	if !p.IsNew() || p.FreeSpace() != 0 {
		t.Fatal("zero page should be new with no free space")
	}
	p.Init(32)
	if p.IsNew() {
		t.Fatal("initialised page reported new")
	}
	if got, want := p.FreeSpace(), BlockSize-32-PageHeaderSize; got != want {
		t.Fatalf("free space %d, want %d", got, want)
	}
	if p.Special() != BlockSize-32 || p.Version() != PageLayoutVersion {
		t.Fatalf("special %d version %d", p.Special(), p.Version())
	}
}

func blockNum(b uint32) base.BlockNum { return base.BlockNum(b) }
