package sortspill

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
)

// recordHandler keeps the log records it is given.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// log_temp_files: every temp file at least LogAbove bytes is logged once,
// when it is removed, with its path and size; -1 logs none.
func TestLogTempFiles(t *testing.T) {
	for _, c := range []struct {
		name     string
		logAbove int64
		all      bool
	}{{"every file", 0, true}, {"none", NoTempFileLimit, false}, {"above a size no run reaches", 1 << 30, false}} {
		t.Run(c.name, func(t *testing.T) {
			h := &recordHandler{}
			fs, ts := newTestTemp(t, TempOptions{Limit: NoTempFileLimit, LogAbove: c.logAbove, Logger: slog.New(h)})
			s, err := spillingSort(t, context.Background(), ts, bytes.Compare)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Finish(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			requireNoTempFiles(t, fs)
			want := 0
			if c.all {
				want = int(ts.Stats().Files)
			}
			if len(h.recs) != want {
				t.Fatalf("%d log lines for %d temp files, want %d", len(h.recs), ts.Stats().Files, want)
			}
			for _, r := range h.recs {
				var path string
				var size int64
				r.Attrs(func(a slog.Attr) bool {
					switch a.Key {
					case "path":
						path = a.Value.String()
					case "size":
						size = a.Value.Int64()
					}
					return true
				})
				if path == "" || size <= 0 {
					t.Errorf("log line %q lacks the file's path or size", r.Message)
				}
			}
		})
	}
}
