package ycsb

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records latencies in log-linear buckets: values below 2^subBits
// nanoseconds are exact; above, each power of two is split into 2^subBits
// equal buckets, a relative error under 1/2^subBits (3%). Not safe for
// concurrent use: each worker has its own and they are merged at the end.
type Histogram struct {
	counts [64 << subBits]uint64
	n      uint64
	sum    float64 // ns
	min    int64
	max    int64
}

const subBits = 5

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 1 // 2^e <= v < 2^(e+1), e >= subBits
	sub := int(v>>(e-subBits)) & (1<<subBits - 1)
	return (e-subBits+1)<<subBits + sub
}

// bucketHigh is the largest value of bucket b.
func bucketHigh(b int) int64 {
	if b < 1<<subBits {
		return int64(b)
	}
	e := b>>subBits + subBits - 1
	sub := int64(b & (1<<subBits - 1))
	lo := int64(1)<<e + sub<<(e-subBits)
	return lo + int64(1)<<(e-subBits) - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.n++
	h.sum += float64(v)
}

// Merge adds o's samples.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Mean latency.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Min and Max latency.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the latency at q (0..1): the upper edge of the bucket
// holding the sample of that rank, capped at the maximum.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(b), h.max))
		}
	}
	return time.Duration(h.max)
}
