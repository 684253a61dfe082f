package sortspill

import "errors"

// arena copies records into chunks of one size and hands out slices of
// them; a record over a quarter of a chunk is allocated alone, so a large
// record does not waste most of a chunk. The Sorter's load and the hash
// table's keys live in one each.
type arena struct {
	chunkSize int
	// newChunk makes an empty chunk of cap chunkSize; nil makes chunks that
	// start at minBlockSize and double up to chunkSize, so that a few small
	// records do not take a whole chunk.
	newChunk   func() []byte
	chunks     [][]byte // every chunk allocated, reused after reset
	chunk      int      // index of the chunk being filled
	chunkBytes int64    // the chunks' capacities
	bigBytes   int64    // records too large for a chunk, allocated alone
}

// memory returns the bytes the arena holds.
func (a *arena) memory() int64 { return a.chunkBytes + a.bigBytes }

// nextChunkSize is the capacity of the chunk the arena would make next
// for a record of n bytes (at most a quarter of chunkSize).
func (a *arena) nextChunkSize(n int) int {
	if a.newChunk != nil {
		return a.chunkSize
	}
	next := minBlockSize
	if len(a.chunks) > 0 {
		next = 2 * cap(a.chunks[len(a.chunks)-1])
	}
	return min(max(next, n), a.chunkSize)
}

// growth returns the bytes copying a record of n bytes would allocate.
func (a *arena) growth(n int) int64 {
	switch {
	case n > a.chunkSize/4:
		return int64(n)
	case a.chunk < len(a.chunks) && len(a.chunks[a.chunk])+n <= cap(a.chunks[a.chunk]):
		return 0
	case a.chunk+1 < len(a.chunks) && n <= cap(a.chunks[a.chunk+1]):
		return 0
	}
	return int64(a.nextChunkSize(n))
}

// alloc copies rec into the arena. The copy's capacity is its length, so
// appending to it never writes over its neighbour.
func (a *arena) alloc(rec []byte) []byte {
	n := len(rec)
	if n > a.chunkSize/4 {
		a.bigBytes += int64(n)
		return append([]byte(nil), rec...)
	}
	for {
		if a.chunk == len(a.chunks) {
			var c []byte
			if a.newChunk != nil {
				c = a.newChunk()
			} else {
				c = make([]byte, 0, a.nextChunkSize(n))
			}
			a.chunks = append(a.chunks, c)
			a.chunkBytes += int64(cap(c))
		}
		c := a.chunks[a.chunk]
		if len(c)+n <= cap(c) {
			a.chunks[a.chunk] = c[:len(c)+n]
			dst := c[len(c) : len(c)+n : len(c)+n]
			copy(dst, rec)
			return dst
		}
		a.chunk++
	}
}

// reset empties the arena and keeps its chunks.
func (a *arena) reset() {
	for i := range a.chunks {
		a.chunks[i] = a.chunks[i][:0]
	}
	a.chunk, a.bigBytes = 0, 0
}

// release empties the arena and gives its chunks to put.
func (a *arena) release(put func([]byte)) {
	for _, c := range a.chunks {
		put(c)
	}
	a.chunks, a.chunk, a.chunkBytes, a.bigBytes = nil, 0, 0, 0
}

// opState is where a sort or a hash aggregate is in its life: taking input,
// giving output, failed or closed.
type opState struct {
	finished bool
	closed   bool
	err      error
}

var errClosed = errors.New("sortspill: the operation is closed")

// usable returns the error that stops a call: a failure, Close, or a call
// out of order.
func (st *opState) usable(output bool) error {
	switch {
	case st.err != nil:
		return st.err
	case st.closed:
		return errClosed
	case output && !st.finished:
		return errors.New("sortspill: Next before Finish")
	case !output && st.finished:
		return errors.New("sortspill: input after Finish")
	}
	return nil
}

// failed records err, the first failure winning, and returns the one kept.
func (st *opState) failed(err error) error {
	if st.err == nil {
		st.err = err
	}
	return st.err
}
