package pagecache

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/heapkv/heapkv/internal/base"
)

// BlockSize is the size of every page of every relation (PostgreSQL's BLCKSZ).
const BlockSize = 8192

// The common page header, owned by this package and shared by the heap and the
// B+tree. Everything is little-endian.
//
//	 0               8       12      14      16      18      20      22      24
//	+---------------+-------+-------+-------+-------+-------+-------+-------+
//	| page LSN      |checksm| flags | lower | upper |special|version|reservd|
//	+---------------+-------+-------+-------+-------+-------+-------+-------+
//	|  line pointers, growing up from PageHeaderSize to lower  ...          |
//	|                  ... free space between lower and upper ...           |
//	|  ... tuples, growing down from special to upper                       |
//	|  special space (access-method specific), from special to BlockSize   |
//	+-----------------------------------------------------------------------+
//
// The checksum is CRC-32C over the block number and the whole page with the
// checksum field read as zero, so a page written to the wrong block fails too.
// A page of all zero bytes is a valid new page (a crash may leave a relation
// extended by zeros); any other page must carry a correct checksum.
const (
	PageHeaderSize = 24

	offLSN      = 0
	offChecksum = 8
	offFlags    = 12
	offLower    = 14
	offUpper    = 16
	offSpecial  = 18
	offVersion  = 20

	// PageLayoutVersion is written into every initialised page.
	PageLayoutVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Page is a view of one BlockSize page.
type Page []byte

// LSN returns the LSN of the last WAL record that changed the page.
func (p Page) LSN() base.LSN { return base.LSN(binary.LittleEndian.Uint64(p[offLSN:])) }

// SetLSN stamps the page with the end LSN of the record that changed it.
func (p Page) SetLSN(lsn base.LSN) { binary.LittleEndian.PutUint64(p[offLSN:], uint64(lsn)) }

// Checksum returns the stored checksum.
func (p Page) Checksum() uint32 { return binary.LittleEndian.Uint32(p[offChecksum:]) }

// Flags returns the access method's page flags.
func (p Page) Flags() uint16 { return binary.LittleEndian.Uint16(p[offFlags:]) }

// SetFlags sets the access method's page flags.
func (p Page) SetFlags(f uint16) { binary.LittleEndian.PutUint16(p[offFlags:], f) }

// Lower is the offset of the end of the line pointer array.
func (p Page) Lower() uint16 { return binary.LittleEndian.Uint16(p[offLower:]) }

// Upper is the offset of the start of tuple space.
func (p Page) Upper() uint16 { return binary.LittleEndian.Uint16(p[offUpper:]) }

// Special is the offset of the access method's special space.
func (p Page) Special() uint16 { return binary.LittleEndian.Uint16(p[offSpecial:]) }

// SetLower sets the end of the line pointer array.
func (p Page) SetLower(v uint16) { binary.LittleEndian.PutUint16(p[offLower:], v) }

// SetUpper sets the start of tuple space.
func (p Page) SetUpper(v uint16) { binary.LittleEndian.PutUint16(p[offUpper:], v) }

// Version returns the page layout version; 0 for a new (all-zero) page.
func (p Page) Version() uint16 { return binary.LittleEndian.Uint16(p[offVersion:]) }

// IsNew reports whether the page was never initialised (its header is zero).
func (p Page) IsNew() bool { return p.Upper() == 0 }

// FreeSpace returns the bytes between the line pointers and the tuples.
func (p Page) FreeSpace() int {
	if p.IsNew() {
		return 0
	}
	return int(p.Upper()) - int(p.Lower())
}

// Init formats p as an empty page with specialSize bytes of special space.
func (p Page) Init(specialSize int) {
	clear(p[:BlockSize])
	special := uint16(BlockSize - specialSize)
	p.SetLower(PageHeaderSize)
	p.SetUpper(special)
	binary.LittleEndian.PutUint16(p[offSpecial:], special)
	binary.LittleEndian.PutUint16(p[offVersion:], PageLayoutVersion)
}

// ComputeChecksum returns the checksum p should carry as block blk.
func (p Page) ComputeChecksum(blk base.BlockNum) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(blk))
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:])
	c = crc32.Update(c, castagnoli, p[:offChecksum])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, p[offChecksum+4:BlockSize])
}

// SetChecksum stores the checksum for block blk. Call it on the private copy
// that is about to be written, never on a shared buffer.
func (p Page) SetChecksum(blk base.BlockNum) {
	binary.LittleEndian.PutUint32(p[offChecksum:], p.ComputeChecksum(blk))
}

// Verify checks a page just read from disk as block blk. An all-zero page is
// valid. It reports whether the header is sane and the checksum matches.
func (p Page) Verify(blk base.BlockNum, checksums bool) bool {
	if len(p) != BlockSize {
		return false
	}
	if p.IsNew() {
		return base.IsZero(p)
	}
	lower, upper, special := p.Lower(), p.Upper(), p.Special()
	if lower < PageHeaderSize || lower > upper || upper > special || int(special) > BlockSize {
		return false
	}
	return !checksums || p.Checksum() == p.ComputeChecksum(blk)
}
