package xlog

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// Compression is how full-page images are compressed (wal_compression).
type Compression uint8

const (
	// CompressionNone stores images raw (PostgreSQL's default, off).
	CompressionNone Compression = 0
	// CompressionS2 compresses images with klauspost/compress/s2.
	CompressionS2 Compression = 1
	// CompressionZstd compresses images with klauspost/compress/zstd.
	CompressionZstd Compression = 2
)

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "off"
	case CompressionS2:
		return "s2"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

type imageHeader struct {
	comp             Compression
	holeOff, holeLen uint16
}

// pageHole returns the free space between pd_lower and pd_upper of an
// initialised page, which an image leaves out. A page whose header does not
// look initialised (an all-zero page, or a non-standard page) has no hole.
func pageHole(page []byte) (off, length uint16) {
	p := pagecache.Page(page)
	if p.Version() != pagecache.PageLayoutVersion {
		return 0, 0
	}
	lower, upper := p.Lower(), p.Upper()
	if lower < pagecache.PageHeaderSize || lower > upper || int(upper) > pagecache.BlockSize {
		return 0, 0
	}
	return lower, upper - lower
}

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		var err error
		zstdEnc, err = zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithWindowSize(1<<16),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // constant options; cannot fail
		}
		zstdDec, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(pagecache.BlockSize),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
	})
	return zstdEnc, zstdDec
}

// appendImage appends the image of page (minus its hole, compressed with
// comp when that is smaller) to dst.
func appendImage(dst, page []byte, comp Compression) ([]byte, imageHeader) {
	h := imageHeader{}
	h.holeOff, h.holeLen = pageHole(page)
	raw := page
	if h.holeLen > 0 {
		raw = make([]byte, 0, pagecache.BlockSize-int(h.holeLen))
		raw = append(raw, page[:h.holeOff]...)
		raw = append(raw, page[int(h.holeOff)+int(h.holeLen):]...)
	}
	var packed []byte
	switch comp {
	case CompressionS2:
		packed = s2.Encode(nil, raw)
	case CompressionZstd:
		enc, _ := zstdCodecs()
		packed = enc.EncodeAll(raw, nil)
	}
	if packed != nil && len(packed) < len(raw) {
		h.comp = comp
		return append(dst, packed...), h
	}
	return append(dst, raw...), h
}

// ApplyImage writes the full-page image ref onto page (BlockSize bytes),
// zeroing the hole. It returns an error wrapping base.ErrCorrupt if the image
// cannot be decoded; it never panics.
func (r *BlockRef) applyImage(page []byte) error {
	if len(page) != pagecache.BlockSize {
		return fmt.Errorf("xlog: page of %d bytes", len(page))
	}
	want := pagecache.BlockSize - int(r.HoleLength)
	if int(r.HoleOffset)+int(r.HoleLength) > pagecache.BlockSize {
		return base.CorruptionErrorf("xlog: image hole %d+%d beyond the page", r.HoleOffset, r.HoleLength)
	}
	raw := r.Data
	switch r.Compression {
	case CompressionNone:
	case CompressionS2:
		n, err := s2.DecodedLen(r.Data)
		if err != nil || n != want {
			return base.CorruptionErrorf("xlog: s2 image of rel %d block %d: decoded length %d, want %d (%v)", r.Rel, r.Block, n, want, err)
		}
		raw, err = s2.Decode(make([]byte, want), r.Data)
		if err != nil {
			return base.CorruptionErrorf("xlog: s2 image of rel %d block %d: %v", r.Rel, r.Block, err)
		}
	case CompressionZstd:
		_, dec := zstdCodecs()
		var err error
		raw, err = dec.DecodeAll(r.Data, make([]byte, 0, want))
		if err != nil {
			return base.CorruptionErrorf("xlog: zstd image of rel %d block %d: %v", r.Rel, r.Block, err)
		}
	default:
		return base.CorruptionErrorf("xlog: unknown image compression %d", r.Compression)
	}
	if len(raw) != want {
		return base.CorruptionErrorf("xlog: image of rel %d block %d is %d bytes, want %d", r.Rel, r.Block, len(raw), want)
	}
	copy(page, raw[:r.HoleOffset])
	clear(page[r.HoleOffset : int(r.HoleOffset)+int(r.HoleLength)])
	copy(page[int(r.HoleOffset)+int(r.HoleLength):], raw[r.HoleOffset:])
	return nil
}

// Apply applies an image or a delta to page and stamps nothing: setting the
// page LSN (and deciding whether to apply at all) is the caller's business,
// see RedoContext.RedoBlock. A BlockData reference returns ErrNotPageData.
func (r *BlockRef) Apply(page []byte) error {
	switch r.Kind {
	case BlockImage:
		return r.applyImage(page)
	case BlockDelta:
		return ApplyDelta(page, r.Data)
	case BlockData:
		return ErrNotPageData
	}
	return base.CorruptionErrorf("xlog: unknown block reference kind %d", uint8(r.Kind))
}
