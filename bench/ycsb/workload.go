package ycsb

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// Op is a YCSB operation type.
type Op int

const (
	OpRead Op = iota
	OpUpdate
	OpInsert
	OpScan
	OpReadModifyWrite
	numOps
)

// String is the name YCSB prints for the operation.
func (o Op) String() string {
	return [...]string{"READ", "UPDATE", "INSERT", "SCAN", "READ_MODIFY_WRITE"}[o]
}

// Workload is CoreWorkload's configuration. Field defaults are upstream's
// code defaults (not the workload files').
type Workload struct {
	RecordCount    int64 // recordcount
	OperationCount int64 // operationcount
	ThreadCount    int   // threadcount (default 1)
	FieldCount     int   // fieldcount (default 10)
	FieldLength    int   // fieldlength (default 100; constant only)

	ReadProportion   float64 // readproportion (default 0.95)
	UpdateProportion float64 // updateproportion (default 0.05)
	InsertProportion float64 // insertproportion
	ScanProportion   float64 // scanproportion
	RMWProportion    float64 // readmodifywriteproportion

	RequestDistribution    string // uniform (default), zipfian, latest
	MinScanLength          int64  // minscanlength (default 1)
	MaxScanLength          int64  // maxscanlength (default 1000)
	ScanLengthDistribution string // uniform (default) or zipfian
	Hashed                 bool   // insertorder=hashed (default) vs ordered
	ZeroPadding            int    // zeropadding (default 1)
}

// ParseWorkload reads a Workload from properties.
func ParseWorkload(p Properties) (*Workload, error) {
	w := &Workload{}
	var err error
	geti := func(name string, def int64) int64 {
		v, e := p.int64(name, def)
		err = errors.Join(err, e)
		return v
	}
	getf := func(name string, def float64) float64 {
		v, e := p.float(name, def)
		err = errors.Join(err, e)
		return v
	}
	w.RecordCount = geti("recordcount", 0)
	w.OperationCount = geti("operationcount", 0)
	w.ThreadCount = int(geti("threadcount", 1))
	w.FieldCount = int(geti("fieldcount", 10))
	w.FieldLength = int(geti("fieldlength", 100))
	w.ReadProportion = getf("readproportion", 0.95)
	w.UpdateProportion = getf("updateproportion", 0.05)
	w.InsertProportion = getf("insertproportion", 0)
	w.ScanProportion = getf("scanproportion", 0)
	w.RMWProportion = getf("readmodifywriteproportion", 0)
	w.RequestDistribution = p.str("requestdistribution", "uniform")
	w.MinScanLength = geti("minscanlength", 1)
	w.MaxScanLength = geti("maxscanlength", 1000)
	w.ScanLengthDistribution = p.str("scanlengthdistribution", "uniform")
	w.Hashed = p.str("insertorder", "hashed") != "ordered"
	w.ZeroPadding = int(geti("zeropadding", 1))
	if err != nil {
		return nil, err
	}
	if d := p.str("fieldlengthdistribution", "constant"); d != "constant" {
		return nil, fmt.Errorf("ycsb: fieldlengthdistribution=%s not supported (constant only)", d)
	}
	switch w.RequestDistribution {
	case "uniform", "zipfian", "latest":
	default:
		return nil, fmt.Errorf("ycsb: requestdistribution=%s not supported (uniform, zipfian, latest)", w.RequestDistribution)
	}
	switch w.ScanLengthDistribution {
	case "uniform", "zipfian":
	default:
		return nil, fmt.Errorf("ycsb: scanlengthdistribution=%s not supported", w.ScanLengthDistribution)
	}
	if w.RecordCount <= 0 || w.ThreadCount <= 0 || w.FieldCount <= 0 || w.FieldLength <= 0 ||
		w.MinScanLength < 1 || w.MaxScanLength < w.MinScanLength {
		return nil, fmt.Errorf("ycsb: bad workload: %+v", *w)
	}
	if w.ReadProportion+w.UpdateProportion+w.InsertProportion+w.ScanProportion+w.RMWProportion <= 0 {
		return nil, errors.New("ycsb: all operation proportions are zero")
	}
	return w, nil
}

// ValueSize is the size of one record's value: FieldCount fields of
// FieldLength bytes, stored back to back (field i at i*FieldLength).
func (w *Workload) ValueSize() int { return w.FieldCount * w.FieldLength }

// Key returns the key of record keynum.
func (w *Workload) Key(keynum int64) []byte {
	return []byte(KeyName(keynum, w.Hashed, w.ZeroPadding))
}

// state is what the workers of one run share.
type state struct {
	w       *Workload
	inserts *AckCounter // run-phase inserts (transactioninsertkeysequence)
}

// worker is one client thread's generators.
type worker struct {
	st      *state
	rng     *rand.Rand
	ops     discrete
	keys    Generator
	scanLen Generator
	buf     []byte
}

func newWorker(st *state, seed uint64) *worker {
	w := st.w
	rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	wk := &worker{st: st, rng: rng}
	wk.ops.add(OpRead, w.ReadProportion)
	wk.ops.add(OpUpdate, w.UpdateProportion)
	wk.ops.add(OpInsert, w.InsertProportion)
	wk.ops.add(OpScan, w.ScanProportion)
	wk.ops.add(OpReadModifyWrite, w.RMWProportion)
	switch w.RequestDistribution {
	case "uniform":
		wk.keys = &Uniform{rng: rng, min: 0, max: w.RecordCount - 1}
	case "zipfian":
		// Room for the keys this run may insert: upstream's "fudge
		// factor" of twice the expected inserts.
		expectedNew := int64(float64(w.OperationCount) * w.InsertProportion * 2)
		wk.keys = NewScrambledZipfian(rng, 0, w.RecordCount+expectedNew-1)
	case "latest":
		wk.keys = NewSkewedLatest(rng, st.inserts)
	}
	if w.ScanLengthDistribution == "zipfian" {
		wk.scanLen = NewZipfian(rng, w.MinScanLength, w.MaxScanLength, ZipfianConstant)
	} else {
		wk.scanLen = &Uniform{rng: rng, min: w.MinScanLength, max: w.MaxScanLength}
	}
	return wk
}

// nextKeynum draws an existing record, re-drawing numbers beyond the last
// acknowledged insert.
func (wk *worker) nextKeynum() int64 {
	last := wk.st.inserts.Last()
	for {
		k := wk.keys.Next()
		if k <= last {
			return k
		}
	}
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// fill writes random printable bytes into b.
func (wk *worker) fill(b []byte) {
	for i := 0; i < len(b); {
		r := wk.rng.Uint64()
		for j := 0; j < 10 && i < len(b); j++ {
			b[i] = letters[r%uint64(len(letters))]
			r /= uint64(len(letters))
			i++
		}
	}
}

// newValue returns a fresh record value.
func (wk *worker) newValue() []byte {
	v := make([]byte, wk.st.w.ValueSize())
	wk.fill(v)
	return v
}

// fieldUpdate returns a function that rewrites one random field of a
// record value (writeallfields=false), keeping the others.
func (wk *worker) fieldUpdate() func(old []byte) []byte {
	w := wk.st.w
	field := wk.rng.IntN(w.FieldCount)
	if cap(wk.buf) < w.FieldLength {
		wk.buf = make([]byte, w.FieldLength)
	}
	nf := wk.buf[:w.FieldLength]
	wk.fill(nf)
	return func(old []byte) []byte {
		v := make([]byte, max(len(old), w.ValueSize()))
		copy(v, old)
		copy(v[field*w.FieldLength:], nf)
		return v
	}
}
