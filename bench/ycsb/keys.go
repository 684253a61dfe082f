package ycsb

import (
	"strconv"
	"strings"
)

// FNV-1a 64-bit parameters.
const (
	fnvOffset64 = 0xCBF29CE484222325
	fnvPrime64  = 1099511628211
)

// FNVHash64 is upstream YCSB's fnvhash64 of a record number: FNV-1a over
// the eight bytes of the Java long, taken least-significant byte first
// (Java extracts them with val & 0xff, val >>= 8), and the absolute value
// of the signed result. The byte order matters: hashing big-endian (as
// go-ycsb does) gives different key strings, hence a different key order,
// different scan ranges and different hot keys than upstream, so numbers
// would not be comparable with published YCSB results. Like Java's
// Math.abs, the absolute value of MinInt64 stays negative.
func FNVHash64(v int64) int64 {
	h := uint64(fnvOffset64)
	u := uint64(v)
	for range 8 {
		h ^= u & 0xff
		u >>= 8
		h *= fnvPrime64
	}
	s := int64(h)
	if s < 0 {
		s = -s // MinInt64 wraps to itself, as in Java
	}
	return s
}

// KeyName returns the key of record keynum: "user" followed by its
// decimal, hashed with FNVHash64 first when hashed is set
// (insertorder=hashed, the default), zero-padded to zeroPadding digits.
func KeyName(keynum int64, hashed bool, zeroPadding int) string {
	if hashed {
		keynum = FNVHash64(keynum)
	}
	s := strconv.FormatInt(keynum, 10)
	if pad := zeroPadding - len(s); pad > 0 {
		s = strings.Repeat("0", pad) + s
	}
	return "user" + s
}
