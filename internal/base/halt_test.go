package base

import (
	"errors"
	"syscall"
	"testing"
)

func TestHalt(t *testing.T) {
	h := NewHalt()
	if err := h.Err(); err != nil {
		t.Fatalf("running halt: Err = %v", err)
	}
	select {
	case <-h.Done():
		t.Fatal("Done closed before Stop")
	default:
	}
	h.Stop(syscall.EIO)
	h.Stop(syscall.ENOSPC) // the first cause wins
	<-h.Done()
	err := h.Err()
	if !errors.Is(err, ErrStopped) || !errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Err = %v, want ErrStopped wrapping EIO only", err)
	}

	var nilHalt *Halt
	nilHalt.Stop(syscall.EIO)
	if nilHalt.Err() != nil || nilHalt.Done() != nil {
		t.Fatal("a nil Halt must never stop")
	}
}
