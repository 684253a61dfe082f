package base

import (
	"errors"
	"testing"
)

func TestCheckKey(t *testing.T) {
	errEmpty := errors.New("empty")
	errLarge := errors.New("large")
	if err := CheckKey(make([]byte, MaxKeySize), errEmpty, errLarge); err != nil {
		t.Fatalf("key of MaxKeySize bytes: %v", err)
	}
	if err := CheckKey(nil, errEmpty, errLarge); err != errEmpty {
		t.Fatalf("empty key: got %v, want the caller's sentinel itself", err)
	}
	err := CheckKey(make([]byte, MaxKeySize+1), errEmpty, errLarge)
	if !errors.Is(err, errLarge) || errors.Is(err, errEmpty) {
		t.Fatalf("long key: got %v, want it to match the caller's too-large sentinel only", err)
	}
	if got, want := err.Error(), "large: 1025 bytes, at most 1024"; got != want {
		t.Fatalf("long key: message %q, want %q", got, want)
	}
}
