package sortspill

// merger merges sorted runs into one order with a binary heap of readers,
// ordered by their current records; ties go to the earlier run, so a merge
// is deterministic. The reader whose record was returned last is advanced
// on the next call, not before: its record stays valid until then, and the
// advance is one sift of the heap's top instead of a pop and a push.
type merger struct {
	cmp    func(a, b []byte) int
	abbrev func([]byte) uint64 // nil: no abbreviated keys
	h      []mergeInput
	last   bool // h[0] holds the record returned last
}

type mergeInput struct {
	r   *runReader
	ab  uint64 // the abbreviated key of r's current record
	idx int    // the run's position, to break ties
}

func (m *merger) abbreviate(r *runReader) uint64 {
	if m.abbrev == nil {
		return 0
	}
	return m.abbrev(r.rec)
}

func newMerger(cmp func(a, b []byte) int, abbrev func([]byte) uint64, readers []*runReader) (*merger, error) {
	m := &merger{cmp: cmp, abbrev: abbrev, h: make([]mergeInput, 0, len(readers))}
	for i, r := range readers {
		ok, err := r.next()
		if err != nil {
			return nil, err
		}
		if ok {
			m.h = append(m.h, mergeInput{r: r, ab: m.abbreviate(r), idx: i})
		}
	}
	for i := len(m.h)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
	return m, nil
}

// next returns the smallest record not yet returned.
func (m *merger) next() ([]byte, bool, error) {
	if m.last {
		m.last = false
		ok, err := m.h[0].r.next()
		if err != nil {
			return nil, false, err
		}
		if ok {
			m.h[0].ab = m.abbreviate(m.h[0].r)
		} else {
			n := len(m.h) - 1
			m.h[0] = m.h[n]
			m.h = m.h[:n]
		}
		if len(m.h) > 0 {
			m.down(0)
		}
	}
	if len(m.h) == 0 {
		return nil, false, nil
	}
	m.last = true
	return m.h[0].r.rec, true, nil
}

func (m *merger) less(a, b mergeInput) bool {
	if a.ab != b.ab {
		return a.ab < b.ab
	}
	if c := m.cmp(a.r.rec, b.r.rec); c != 0 {
		return c < 0
	}
	return a.idx < b.idx
}

func (m *merger) down(i int) {
	h := m.h
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		small := l
		if r := l + 1; r < len(h) && m.less(h[r], h[l]) {
			small = r
		}
		if !m.less(h[small], h[i]) {
			return
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
}
