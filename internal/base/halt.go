package base

import (
	"errors"
	"fmt"
	"sync"
)

// ErrStopped marks every error returned after the engine has stopped on a
// fatal I/O error (kv.ErrEngineStopped is this value).
var ErrStopped = errors.New("heapkv: engine stopped after a fatal I/O error; reopen to recover from the WAL")

// Halt is the engine's one fatal state, shared by every subsystem of one
// open database. A failed fsync of the WAL, the CLOG or a data file, or a
// failed WAL write, calls Stop: the kernel may have dropped the dirty pages
// that fsync was to make durable, so nothing written since the last good
// sync can be trusted and the only way on is recovery from the WAL (as
// PostgreSQL PANICs since "fsyncgate").
//
// After Stop, Err returns ErrStopped wrapping the first cause, and Done is
// closed, so that anything that sleeps (lock waiters, group-commit waiters,
// the checkpointer) can select on it and give up. Stop is idempotent: the
// first cause wins.
//
// A nil *Halt is valid and never stops; subsystems used alone in tests need
// none.
type Halt struct {
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	err  error // ErrStopped wrapping the cause; set once, before done closes
}

// NewHalt returns a running Halt.
func NewHalt() *Halt { return &Halt{done: make(chan struct{})} }

// Stop stops the engine with cause. Only the first call has an effect.
func (h *Halt) Stop(cause error) {
	if h == nil {
		return
	}
	h.once.Do(func() {
		if cause == nil {
			cause = errors.New("unknown cause")
		}
		h.mu.Lock()
		if errors.Is(cause, ErrStopped) {
			h.err = cause
		} else {
			h.err = fmt.Errorf("%w: %w", ErrStopped, cause)
		}
		h.mu.Unlock()
		close(h.done)
	})
}

// Err returns nil while the engine runs, and after Stop an error matching
// both ErrStopped and the cause.
func (h *Halt) Err() error {
	if h == nil {
		return nil
	}
	select {
	case <-h.done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.err
	default:
		return nil
	}
}

// Done is closed when the engine stops. A nil Halt's Done is nil, which
// blocks for ever in a select, as a Halt that never stops should.
func (h *Halt) Done() <-chan struct{} {
	if h == nil {
		return nil
	}
	return h.done
}
