package main

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/heapkv/heapkv/kv"
)

// The administrative commands: stats, show, checkpoint, check.

func runStats(e *env, args []string) error {
	fs := e.flags("stats")
	format := formatFlag(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	var s kv.Stats
	err := e.withDB(true, func(db *kv.DB) (err error) {
		s, err = db.Stats()
		return err
	})
	if err != nil {
		return err
	}
	if *format == "json" {
		return writeJSON(e.stdout, statsValue(reflect.ValueOf(s)))
	}
	return writeStatsText(e.stdout, s)
}

// Stats are printed by walking kv.Stats with reflection, so that counters
// added to kv appear without a change here. Names become snake_case, as in
// PostgreSQL's statistics views (BlocksRead: blocks_read).

// byteStats are the fields counted in bytes, printed with a readable size.
var byteStats = map[string]bool{"SharedBuffers": true, "CLOGBuffers": true, "Bytes": true, "TempBytes": true}

func writeStatsText(w io.Writer, s kv.Stats) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		switch fv.Kind() {
		case reflect.Struct:
			fmt.Fprintf(tw, "%s\n", snakeCase(f.Name))
			for j := range fv.NumField() {
				name := fv.Type().Field(j).Name
				fmt.Fprintf(tw, "  %s\t%s\n", snakeCase(name), statText(name, fv.Field(j)))
			}
		case reflect.Slice: // Keyspaces: a table
			fmt.Fprintf(tw, "%s\n", snakeCase(f.Name))
			et := fv.Type().Elem()
			var cols []string
			for j := range et.NumField() {
				cols = append(cols, snakeCase(et.Field(j).Name))
			}
			fmt.Fprintf(tw, "  %s\n", strings.Join(cols, "\t"))
			for k := range fv.Len() {
				row := fv.Index(k)
				cols = cols[:0]
				for j := range row.NumField() {
					cols = append(cols, statText(et.Field(j).Name, row.Field(j)))
				}
				fmt.Fprintf(tw, "  %s\n", strings.Join(cols, "\t"))
			}
		}
	}
	return tw.Flush()
}

// statText formats one counter for the text output.
func statText(name string, v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if byteStats[name] && v.Int() >= 1024 {
			return fmt.Sprintf("%d (%s)", v.Int(), humanBytes(v.Int()))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if byteStats[name] && v.Uint() >= 1024 {
			return fmt.Sprintf("%d (%s)", v.Uint(), humanBytes(int64(v.Uint())))
		}
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
	}
	return fmt.Sprint(v.Interface())
}

// statsValue converts a stats value to JSON-ready maps and slices with
// snake_case names. Durations become milliseconds (a float), as PostgreSQL
// reports wal_write_time.
func statsValue(v reflect.Value) any {
	if d, ok := v.Interface().(time.Duration); ok {
		return float64(d) / float64(time.Millisecond)
	}
	switch v.Kind() {
	case reflect.Struct:
		m := make(map[string]any, v.NumField())
		for i := range v.NumField() {
			m[snakeCase(v.Type().Field(i).Name)] = statsValue(v.Field(i))
		}
		return m
	case reflect.Slice:
		s := make([]any, v.Len())
		for i := range v.Len() {
			s[i] = statsValue(v.Index(i))
		}
		return s
	}
	return v.Interface()
}

// snakeCase turns a Go field name into PostgreSQL's style: BlocksRead is
// blocks_read, CLOGHits clog_hits, NextXID next_xid.
func snakeCase(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || (unicode.IsUpper(r[i-1]) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func runShow(e *env, args []string) error {
	fs := e.flags("show")
	format := formatFlag(fs)
	verbose := fs.Bool("v", false, "add each setting's description")
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	var settings []kv.Setting
	err = e.withDB(true, func(db *kv.DB) error {
		settings = db.Settings()
		return nil
	})
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		var found []kv.Setting
		for _, s := range settings {
			if strings.EqualFold(s.Name, pos[0]) {
				found = append(found, s)
			}
		}
		if len(found) == 0 {
			return fmt.Errorf("unrecognized configuration parameter %q", pos[0])
		}
		settings = found
		if *format == "text" && !*verbose {
			_, err := fmt.Fprintln(e.stdout, found[0].Value)
			return err
		}
	}
	if *format == "json" {
		type setting struct {
			Name   string `json:"name"`
			Value  string `json:"setting"`
			Unit   string `json:"unit"`
			Source string `json:"source"`
			Desc   string `json:"description"`
			Note   string `json:"note,omitempty"`
		}
		out := make([]setting, len(settings))
		for i, s := range settings {
			out[i] = setting(s)
		}
		return writeJSON(e.stdout, out)
	}
	header := []string{"name", "setting", "unit", "source", "note"}
	if *verbose {
		header = append(header, "description")
	}
	rows := [][]string{header}
	for _, s := range settings {
		row := []string{s.Name, s.Value, s.Unit, s.Source, s.Note}
		if *verbose {
			row = append(row, s.Desc)
		}
		rows = append(rows, row)
	}
	// The rule under the header, as psql draws it, as wide as each column.
	rule := make([]string, len(header))
	for i := range header {
		width := 0
		for _, r := range rows {
			width = max(width, len(r[i]))
		}
		rule[i] = strings.Repeat("-", width)
	}
	rows = slices.Insert(rows, 1, rule)
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// An empty last column (most settings have no note) leaves padding.
	for line := range strings.Lines(table.String()) {
		if _, err := fmt.Fprintln(e.stdout, strings.TrimRight(line, " \n")); err != nil {
			return err
		}
	}
	return nil
}

func runAnalyze(e *env, args []string) error {
	fs := e.flags("analyze")
	ks := keyspaceFlag(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	return e.withDB(true, func(db *kv.DB) error { return db.Analyze(*ks) })
}

func runCheckpoint(e *env, args []string) error {
	fs := e.flags("checkpoint")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	err := e.withDB(true, func(db *kv.DB) error { return db.Checkpoint() })
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, "checkpoint complete")
	return err
}

func runCheck(e *env, args []string) error {
	fs := e.flags("check")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	var problems []error
	err := e.withDB(true, func(db *kv.DB) error {
		if err := db.Check(); err != nil {
			problems = []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				problems = j.Unwrap()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(problems) == 0 {
		_, err := fmt.Fprintln(e.stdout, "ok")
		return err
	}
	for _, p := range problems {
		// A problem may itself be several joined; one line each.
		for _, line := range strings.Split(p.Error(), "\n") {
			fmt.Fprintln(e.stdout, line)
		}
	}
	return &problemsError{n: len(problems)}
}
