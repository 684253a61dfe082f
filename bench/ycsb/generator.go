package ycsb

import (
	"math"
	"math/rand/v2"
	"sync"
)

// ZipfianConstant is YCSB's default skew (zipfianconstant).
const ZipfianConstant = 0.99

// scrambledItemCount is the fixed item space the scrambled zipfian draws
// from before hashing into the real key range; scrambledZetan is
// zeta(scrambledItemCount, 0.99), precomputed because summing 10^10 terms
// at start-up would take minutes. Both are the values upstream YCSB uses.
const (
	scrambledItemCount = 10_000_000_000
	scrambledZetan     = 26.46902820178302
)

// Zeta returns sum_{i=1..n} 1/i^theta.
func Zeta(n int64, theta float64) float64 { return zetaFrom(0, n, theta, 0) }

// zetaFrom extends sum, the zeta over the first st items, to n items.
func zetaFrom(st, n int64, theta, sum float64) float64 {
	for i := st; i < n; i++ {
		sum += 1 / math.Pow(float64(i+1), theta)
	}
	return sum
}

// Zipfian draws integers in [base, base+items) with P(base+i) proportional
// to 1/(i+1)^theta, by the method of Gray et al., "Quickly Generating
// Billion-Record Synthetic Databases" (SIGMOD 1994): the first two ranks
// are exact, the rest come from the inverse of the continuous
// approximation. The item count may grow between calls (NextN), in which
// case zeta is extended incrementally. Not safe for concurrent use: each
// worker owns its generators.
type Zipfian struct {
	rng   *rand.Rand
	base  int64
	items int64 // the count zetan was computed for
	theta float64
	zeta2 float64
	zetan float64
	alpha float64
	eta   float64
	last  int64
}

// NewZipfian returns a generator over [min, max] with skew theta.
func NewZipfian(rng *rand.Rand, min, max int64, theta float64) *Zipfian {
	return newZipfianZeta(rng, min, max, theta, Zeta(max-min+1, theta))
}

func newZipfianZeta(rng *rand.Rand, min, max int64, theta, zetan float64) *Zipfian {
	z := &Zipfian{rng: rng, base: min, items: max - min + 1, theta: theta, zetan: zetan}
	z.zeta2 = Zeta(2, theta)
	z.alpha = 1 / (1 - theta)
	z.setEta()
	return z
}

func (z *Zipfian) setEta() {
	z.eta = (1 - math.Pow(2/float64(z.items), 1-z.theta)) / (1 - z.zeta2/z.zetan)
}

// Next draws from the generator's item count.
func (z *Zipfian) Next() int64 { return z.NextN(z.items) }

// NextN draws over items items; a larger count than before extends zeta.
// (A smaller count is ignored, as upstream does by default.)
func (z *Zipfian) NextN(items int64) int64 {
	if items > z.items {
		z.zetan = zetaFrom(z.items, items, z.theta, z.zetan)
		z.items = items
		z.setEta()
	}
	u := z.rng.Float64()
	uz := u * z.zetan
	var v int64
	switch {
	case uz < 1:
		v = z.base
	case uz < 1+math.Pow(0.5, z.theta):
		v = z.base + 1
	default:
		v = z.base + int64(float64(z.items)*math.Pow(z.eta*u-z.eta+1, z.alpha))
	}
	z.last = v
	return v
}

// ScrambledZipfian is YCSB's "zipfian" request distribution: a zipfian
// draw over a fixed space of 10^10 items, FNV-hashed and reduced mod the
// real item count, so popular keys are spread over the keyspace instead of
// clustering at the lowest record numbers. The skew of the result is a
// little weaker than a plain zipfian over the same items (hash collisions
// merge ranks), which is upstream's behaviour too.
type ScrambledZipfian struct {
	z     *Zipfian
	min   int64
	items int64
}

// NewScrambledZipfian returns a generator over [min, max].
func NewScrambledZipfian(rng *rand.Rand, min, max int64) *ScrambledZipfian {
	return &ScrambledZipfian{
		z:     newZipfianZeta(rng, 0, scrambledItemCount-1, ZipfianConstant, scrambledZetan),
		min:   min,
		items: max - min + 1,
	}
}

// Next returns a record number in [min, max].
func (s *ScrambledZipfian) Next() int64 {
	return s.min + FNVHash64(s.z.Next())%s.items
}

// SkewedLatest is YCSB's "latest" distribution: a zipfian over the number
// of acknowledged records, counted back from the newest, so the last
// acknowledged insert is the most popular record.
type SkewedLatest struct {
	basis *AckCounter
	z     *Zipfian
}

// NewSkewedLatest returns a generator following basis.
func NewSkewedLatest(rng *rand.Rand, basis *AckCounter) *SkewedLatest {
	return &SkewedLatest{basis: basis, z: NewZipfian(rng, 0, max(basis.Last(), 1)-1, ZipfianConstant)}
}

// Next returns last - zipf(last): in [1, last], last most likely.
func (l *SkewedLatest) Next() int64 {
	last := l.basis.Last()
	return last - l.z.NextN(max(last, 1))
}

// Uniform draws uniformly from [min, max].
type Uniform struct {
	rng      *rand.Rand
	min, max int64
}

// Next returns a value in [min, max].
func (u *Uniform) Next() int64 { return u.min + u.rng.Int64N(u.max-u.min+1) }

// Generator yields record numbers (or scan lengths).
type Generator interface{ Next() int64 }

// AckCounter hands out insert record numbers and tracks the highest one
// below which every insert has been acknowledged (upstream's
// AcknowledgedCounterGenerator), so readers never ask for a record whose
// insert is still in flight. Safe for concurrent use.
type AckCounter struct {
	mu struct {
		sync.Mutex
		next    int64          // next record number to hand out
		limit   int64          // every record number <= limit is acknowledged
		pending map[int64]bool // acknowledged numbers above limit+1
	}
}

// NewAckCounter starts handing out start; start-1 counts as acknowledged.
func NewAckCounter(start int64) *AckCounter {
	c := &AckCounter{}
	c.mu.next = start
	c.mu.limit = start - 1
	c.mu.pending = make(map[int64]bool)
	return c
}

// Next returns a fresh record number to insert.
func (c *AckCounter) Next() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.mu.next
	c.mu.next++
	return v
}

// Acknowledge marks v's insert as complete.
func (c *AckCounter) Acknowledge(v int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.pending[v] = true
	for c.mu.pending[c.mu.limit+1] {
		delete(c.mu.pending, c.mu.limit+1)
		c.mu.limit++
	}
}

// Last is the highest record number with it and all below acknowledged.
func (c *AckCounter) Last() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.limit
}

// discrete picks an operation by weight.
type discrete struct {
	ops     []Op
	weights []float64
	sum     float64
}

func (d *discrete) add(op Op, w float64) {
	if w > 0 {
		d.ops = append(d.ops, op)
		d.weights = append(d.weights, w)
		d.sum += w
	}
}

func (d *discrete) next(rng *rand.Rand) Op {
	u := rng.Float64() * d.sum
	for i, w := range d.weights {
		if u < w {
			return d.ops[i]
		}
		u -= w
	}
	return d.ops[len(d.ops)-1]
}
