package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// loadGroups loads keys g<i%3>:<i> with value i%10, for i in [0, 30).
func loadGroups(t *testing.T, dir string) {
	t.Helper()
	var in strings.Builder
	for i := range 30 {
		fmt.Fprintf(&in, "g%d:%02d\t%d\n", i%3, i, i%10)
	}
	if r := kvctl(t, dir, in.String(), "load", "-"); r.code != 0 {
		t.Fatal(r)
	}
}

func TestScanOrderByValue(t *testing.T) {
	dir := t.TempDir()
	loadGroups(t, dir)
	cases := []struct {
		args []string
		want string
	}{
		// Value 9 is at keys g0:09, g1:19, g2:29 and 8 at g2:08, g0:18,
		// g1:28; ties go by key.
		{[]string{"--order-by", "value", "--desc", "--limit", "4"}, "g0:09\t9\ng1:19\t9\ng2:29\t9\ng0:18\t8\n"},
		// g1's values by key order are 1 4 7 0 3 6 9 2 5 8: 0 at g1:10, 1 at g1:01, 2 at g1:22.
		{[]string{"--order-by", "value", "--limit", "2", "--offset", "1", "--prefix", "g1"}, "g1:01\t1\ng1:22\t2\n"},
		{[]string{"--desc", "--limit", "2"}, "g2:29\t9\ng2:26\t6\n"},
		{[]string{"--offset", "28"}, "g2:26\t6\ng2:29\t9\n"},
	}
	for _, c := range cases {
		if got := ok(t, dir, append([]string{"scan"}, c.args...)...); got != c.want {
			t.Errorf("scan %v:\n%s\nwant:\n%s", c.args, got, c.want)
		}
	}
	fails(t, dir, 2, `--order-by takes key or value`, "scan", "--order-by", "size")
	fails(t, dir, 2, `--reverse is for key order`, "scan", "--order-by", "value", "--reverse")
	fails(t, dir, 2, `--offset must not be negative`, "scan", "--offset", "-1")
}

func TestAgg(t *testing.T) {
	dir := t.TempDir()
	loadGroups(t, dir)
	// g0 holds i = 0, 3, ..., 27: values 0 3 6 9 2 5 8 1 4 7.
	got := ok(t, dir, "agg", "--group-by-prefix", ":", "--count", "--count-distinct", "--min", "--max", "--sum", "--ordered")
	want := "g0\t10\t10\t0\t9\t45\ng1\t10\t10\t0\t9\t45\ng2\t10\t10\t0\t9\t45\n"
	if got != want {
		t.Errorf("agg:\n%s\nwant:\n%s", got, want)
	}
	if got := ok(t, dir, "agg", "--count", "--sum", "--start", "g1"); got != "\t20\t90\n" {
		t.Errorf("agg without grouping = %q", got)
	}
	if got := ok(t, dir, "agg", "--group-by-value", "--count", "--ordered", "--format", "json", "--prefix", "g0:0"); !strings.HasPrefix(got, `{"group":"0","count":1}`) {
		t.Errorf("agg json = %q", got)
	}
	if got := ok(t, dir, "agg", "--group-by-length", "1", "--count"); got != "g\t30\n" {
		t.Errorf("agg --group-by-length 1 = %q", got)
	}
	ok(t, dir, "put", "g0:99", "many")
	fails(t, dir, 1, `not a number`, "agg", "--sum")
	fails(t, dir, 2, `at least one of --count`, "agg", "--group-by-value")
	fails(t, dir, 2, `at most one of`, "agg", "--count", "--group-by-value", "--group-by-length", "2")
	fails(t, dir, 2, `one byte`, "agg", "--count", "--group-by-prefix", "::")
}

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	loadGroups(t, dir)
	plan := ok(t, dir, "explain", "scan", "--order-by", "value", "--limit", "3")
	if !regexp.MustCompile(`(?s)^Limit .*\n  Limit: 3\n  ->  Sort .*\n        Sort Key: value, key\n        ->  Index Scan on default `).MatchString(plan) ||
		strings.Contains(plan, "actual") {
		t.Errorf("explain scan:\n%s", plan)
	}
	plan = ok(t, dir, "explain", "--analyze", "scan", "--order-by", "value", "--limit", "3")
	for _, want := range []string{"(actual time=", "rows=3 loops=1", "Sort Method: top-N heapsort  Memory: ", "rows=30 loops=1", "Execution Time: "} {
		if !strings.Contains(plan, want) {
			t.Errorf("explain --analyze scan lacks %q:\n%s", want, plan)
		}
	}
	plan = ok(t, dir, "explain", "--analyze", "agg", "--group-by-prefix", ":", "--count")
	if !strings.HasPrefix(plan, "HashAggregate") || !strings.Contains(plan, "Batches: 1") || !strings.Contains(plan, "rows=3 loops=1") {
		t.Errorf("explain --analyze agg:\n%s", plan)
	}
	plan = ok(t, dir, "explain", "agg", "--group-by-prefix", ":", "--count-distinct")
	if !strings.HasPrefix(plan, "GroupAggregate") || !strings.Contains(plan, "->  Sort") {
		t.Errorf("explain agg --count-distinct:\n%s", plan)
	}
	fails(t, dir, 2, `usage: kvctl explain`, "explain", "get")
	fails(t, dir, 2, `flag provided but not defined: -bogus`, "explain", "scan", "--bogus")
}

func TestExplainBitmap(t *testing.T) {
	dir := t.TempDir()
	loadGroups(t, dir)
	ok(t, dir, "analyze")
	plan := ok(t, dir, "explain", "--analyze", "scan", "--scan", "bitmap", "--prefix", "g1")
	for _, want := range []string{"Sort  (rows=", "Sort Key: key", "->  Bitmap Heap Scan on default", "Heap Blocks: exact=", "->  Bitmap Index Scan on default", "rows=10 loops=1", "Planning: bitmap heap scan forced"} {
		if !strings.Contains(plan, want) {
			t.Errorf("explain --analyze scan --scan bitmap lacks %q:\n%s", want, plan)
		}
	}
	if got, want := ok(t, dir, "scan", "--scan", "bitmap", "--prefix", "g1"), ok(t, dir, "scan", "--prefix", "g1"); got != want {
		t.Errorf("bitmap scan:\n%s\nindex scan:\n%s", got, want)
	}
	fails(t, dir, 2, `--scan takes index or bitmap`, "scan", "--scan", "seq")
}
