package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func runCalc(t *testing.T, c *Case) string {
	switch c.Cmd {
	case "sum":
		n := 0
		for _, l := range c.InputLines() {
			v, err := strconv.Atoi(l)
			if err != nil {
				t.Fatalf("%s: %v", c.Pos, err)
			}
			n += v
		}
		return strconv.Itoa(n)
	case "echo":
		var b strings.Builder
		for _, a := range c.Args {
			fmt.Fprintf(&b, "%s %v\n", a.Key, a.Vals)
		}
		return b.String()
	}
	t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
	return ""
}

func TestTranscript(t *testing.T) {
	RunTranscript(t, "testdata/transcript", runCalc)
}

// TestTranscriptRewrite rewrites a copy of the transcript whose outputs are
// wrong and gets the file back byte for byte.
func TestTranscriptRewrite(t *testing.T) {
	want, err := os.ReadFile("testdata/transcript")
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Replace(string(want), "----\n42\n", "----\n41\nand more\n", 1)
	wrong = strings.Replace(wrong, "----\n0\n", "----\n", 1)
	path := filepath.Join(t.TempDir(), "transcript")
	if err := os.WriteFile(path, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old bool) { *rewriteFlag = old }(*rewriteFlag)
	*rewriteFlag = true
	RunTranscript(t, path, runCalc)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
}

func TestTranscriptParse(t *testing.T) {
	chunks, err := parseTranscript("f", "# c\ncmd x=1\nin\n----\nout\n\n\nnext\n----\n")
	if err != nil {
		t.Fatal(err)
	}
	var cases []*Case
	for _, ch := range chunks {
		if ch.c != nil {
			cases = append(cases, ch.c)
		}
	}
	if len(cases) != 2 {
		t.Fatalf("%d cases", len(cases))
	}
	c := cases[0]
	if c.Pos != "f:2" || c.Cmd != "cmd" || c.Str("x", "") != "1" || c.Input != "in" || c.Expected != "out" {
		t.Fatalf("first case %+v", c)
	}
	if c := cases[1]; c.Pos != "f:8" || c.Input != "" || c.Expected != "" {
		t.Fatalf("second case %+v", c)
	}
	for _, bad := range []string{"cmd\nno separator\n", "cmd a=(b\n----\n", "cmd =x\n----\n"} {
		if _, err := parseTranscript("f", bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
