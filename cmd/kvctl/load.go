package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/heapkv/heapkv/kv"
)

type pair struct{ key, value []byte }

func runLoad(e *env, args []string) error {
	fs := e.flags("load")
	ks := keyspaceFlag(fs)
	format := fs.String("format", "text", "input `format`: text (key<TAB>value) or json")
	batch := fs.Int("batch", 1000, "commit every `N` rows in one transaction")
	bar := fs.Bool("progress", false, "draw a progress bar on stderr even when it is not a terminal")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	if *batch < 1 {
		return usageErrorf("--batch must be at least 1")
	}
	in, size := e.stdin, int64(0)
	name := "stdin"
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in, name = f, pos[0]
	}
	cr := &countingReader{r: in}
	r := bufio.NewReaderSize(cr, 256<<10)
	p := newProgress(e.stderr, *bar || isTerminal(e.stderr), size)
	parseLine := func(line []byte) ([]byte, []byte, error) { return parseTextLine(string(line)) }
	if *format == "json" {
		parseLine = parseJSONLine
	}

	var rows int64
	err = e.withDB(false, func(db *kv.DB) error {
		pending := make([]pair, 0, *batch)
		flush := func() error {
			if len(pending) == 0 {
				return nil
			}
			err := db.Update(context.Background(), func(tx *kv.Tx) error {
				k := tx.Keyspace(*ks)
				for _, pr := range pending {
					if err := k.Put(pr.key, pr.value); err != nil {
						return fmt.Errorf("key %s: %w", textField(pr.key), err)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			rows += int64(len(pending))
			pending = pending[:0]
			p.update(rows, cr.n)
			return nil
		}
		for lineNo := 1; ; lineNo++ {
			line, rerr := r.ReadBytes('\n')
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				return fmt.Errorf("read %s: %w", name, rerr)
			}
			line = trimNewline(line)
			if len(line) > 0 {
				key, value, err := parseLine(line)
				if err != nil {
					return fmt.Errorf("%s line %d: %v", name, lineNo, err)
				}
				pending = append(pending, pair{key, value})
				if len(pending) == *batch {
					if err := flush(); err != nil {
						return fmt.Errorf("%s line %d: %w", name, lineNo, err)
					}
				}
			}
			if rerr != nil {
				return flush()
			}
		}
	})
	p.finish(rows, cr.n)
	if err != nil {
		if rows > 0 {
			return fmt.Errorf("%w (the %d rows before it were committed)", err, rows)
		}
		return err
	}
	elapsed := time.Since(p.start)
	fmt.Fprintf(e.stdout, "loaded %d rows in %.2fs (%.0f rows/s)\n", rows, elapsed.Seconds(), rate(rows, elapsed))
	return nil
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1]
	}
	return b
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func rate(rows int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(rows) / d.Seconds()
}

// progress reports a load's progress on w: a bar redrawn in place (at most
// ten times a second), or else a count line every second.
type progress struct {
	w     io.Writer
	bar   bool
	total int64 // input bytes; 0 if unknown
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, bar bool, total int64) *progress {
	now := time.Now()
	return &progress{w: w, bar: bar, total: total, start: now, last: now}
}

func (p *progress) update(rows, read int64) {
	now := time.Now()
	every := time.Second
	if p.bar {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.draw(rows, read, now)
}

func (p *progress) draw(rows, read int64, now time.Time) {
	r := rate(rows, now.Sub(p.start))
	if !p.bar {
		fmt.Fprintf(p.w, "load: %d rows, %.0f rows/s\n", rows, r)
		return
	}
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%d rows  %.0f rows/s  %s read ", rows, r, humanBytes(read))
		return
	}
	const width = 30
	frac := min(float64(read)/float64(p.total), 1)
	done := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%%  %d rows  %.0f rows/s ",
		strings.Repeat("#", done), strings.Repeat(".", width-done), frac*100, rows, r)
}

// finish draws the final state and ends the bar's line.
func (p *progress) finish(rows, read int64) {
	if !p.bar {
		return
	}
	p.draw(rows, read, time.Now())
	fmt.Fprintln(p.w)
}
