package testutil

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

var rewriteFlag = flag.Bool("rewrite", false, "transcript tests: write the outputs they produce into their testdata files instead of comparing")

// A transcript is a testdata file of cases, each run through a callback
// whose output is compared with the one the file holds (after pebble's
// datadriven tests). A case is
//
//	command arg1 key=value key=(a,b,c)
//	input line
//	...
//	----
//	expected output line
//	...
//
// ended by a blank line or the end of the file. An error the command is
// meant to give belongs in its output; a callback fails the test (t.Fatal)
// only when the test itself is broken. Lines starting with # and
// blank lines between cases are comments. A case may have no input and an
// empty output. An output cannot hold a blank line. The cases of a file run
// in order against the same state, which the callback keeps.
//
// With -rewrite the test writes the outputs it got into the file instead of
// comparing them, keeping commands, inputs and comments as they are. A
// rewritten file must be read by a person before it is committed: the
// golden outputs are only worth what that reading checked.

// Case is one case of a transcript.
type Case struct {
	Pos      string // file:line of the command
	Cmd      string
	Args     []Arg
	Input    string // the input lines, joined by \n
	Expected string // the output the file holds, joined by \n

	line string // the command line as the file has it
}

// Arg is an argument of a case's command: key, key=value or
// key=(value,value,...).
type Arg struct {
	Key  string
	Vals []string
}

// Has reports whether the command has an argument key.
func (c *Case) Has(key string) bool {
	_, ok := c.arg(key)
	return ok
}

func (c *Case) arg(key string) (Arg, bool) {
	for _, a := range c.Args {
		if a.Key == key {
			return a, true
		}
	}
	return Arg{}, false
}

// Str returns argument key's single value, or def when there is none.
func (c *Case) Str(key, def string) string {
	a, ok := c.arg(key)
	if !ok || len(a.Vals) == 0 {
		return def
	}
	return a.Vals[0]
}

// Vals returns argument key's values (nil when there is none).
func (c *Case) Vals(key string) []string {
	a, _ := c.arg(key)
	return a.Vals
}

// Int returns argument key as an int, or def when there is none; a value
// that is not a number fails the test.
func (c *Case) Int(t testing.TB, key string, def int) int {
	t.Helper()
	s := c.Str(key, "")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", c.Pos, key, s, err)
	}
	return n
}

// InputLines returns the input split into lines (nil when there is none).
func (c *Case) InputLines() []string {
	if c.Input == "" {
		return nil
	}
	return strings.Split(c.Input, "\n")
}

// chunk is a piece of a transcript file: comment lines, or a case.
type chunk struct {
	text []string // comment and blank lines, when c is nil
	c    *Case
}

// parseTranscript splits a transcript into chunks.
func parseTranscript(name, data string) ([]chunk, error) {
	lines := strings.Split(strings.TrimSuffix(data, "\n"), "\n")
	if data == "" {
		lines = nil
	}
	var chunks []chunk
	for i := 0; i < len(lines); {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			if len(chunks) == 0 || chunks[len(chunks)-1].c != nil {
				chunks = append(chunks, chunk{})
			}
			chunks[len(chunks)-1].text = append(chunks[len(chunks)-1].text, line)
			i++
			continue
		}
		c := &Case{Pos: fmt.Sprintf("%s:%d", name, i+1), line: line}
		var err error
		if c.Cmd, c.Args, err = parseCommand(line); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Pos, err)
		}
		i++
		var input []string
		for ; i < len(lines) && lines[i] != "----"; i++ {
			input = append(input, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("%s: %s: no ---- line", c.Pos, c.Cmd)
		}
		i++ // ----
		var out []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			out = append(out, lines[i])
		}
		if i < len(lines) {
			i++ // the blank line that ends the case
		}
		c.Input, c.Expected = strings.Join(input, "\n"), strings.Join(out, "\n")
		chunks = append(chunks, chunk{c: c})
	}
	return chunks, nil
}

// parseCommand splits a command line into the command and its arguments.
func parseCommand(line string) (string, []Arg, error) {
	fields := strings.Fields(line)
	var args []Arg
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		a := Arg{Key: k}
		switch {
		case !ok:
		case strings.HasPrefix(v, "(") && strings.HasSuffix(v, ")"):
			if inner := v[1 : len(v)-1]; inner != "" {
				a.Vals = strings.Split(inner, ",")
			}
		case strings.ContainsAny(v, "()"):
			return "", nil, fmt.Errorf("argument %q: unbalanced parentheses", f)
		default:
			a.Vals = []string{v}
		}
		if k == "" {
			return "", nil, fmt.Errorf("argument %q has no key", f)
		}
		args = append(args, a)
	}
	return fields[0], args, nil
}

// RunTranscript runs the cases of the transcript at path through run, in
// order, and fails the test for each output that differs from the file's
// (with -rewrite, writes the outputs into the file instead). Trailing
// newlines of an output are ignored.
func RunTranscript(t *testing.T, path string, run func(t *testing.T, c *Case) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := parseTranscript(path, string(data))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ch := range chunks {
		if ch.c == nil {
			for _, l := range ch.text {
				b.WriteString(l + "\n")
			}
			continue
		}
		c := ch.c
		failed := t.Failed()
		got := strings.TrimRight(run(t, c), "\n")
		if !failed && t.Failed() {
			t.Fatalf("%s: %s failed", c.Pos, c.Cmd)
		}
		if hasBlankLine(got) {
			t.Fatalf("%s: %s: the output has a blank line, which a transcript cannot hold:\n%s", c.Pos, c.Cmd, got)
		}
		if !*rewriteFlag && got != c.Expected {
			t.Errorf("%s: %s: output differs (-rewrite to accept it)\nwant:\n%s\ngot:\n%s", c.Pos, c.Cmd, indent(c.Expected), indent(got))
		}
		b.WriteString(strings.Join(append([]string{c.line}, c.InputLines()...), "\n") + "\n----\n")
		if got != "" {
			b.WriteString(got + "\n")
		}
		b.WriteString("\n")
	}
	if *rewriteFlag {
		out := strings.TrimRight(b.String(), "\n") + "\n"
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func hasBlankLine(s string) bool {
	if s == "" {
		return false
	}
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == "" {
			return true
		}
	}
	return false
}

func indent(s string) string {
	if s == "" {
		return "  (nothing)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
