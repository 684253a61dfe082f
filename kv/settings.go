package kv

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/sortspill"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// Setting is one configuration parameter as SHOW ALL lists it.
type Setting struct {
	Name   string // PostgreSQL's name, e.g. shared_buffers
	Value  string // in PostgreSQL's notation, e.g. 128MB, 5min, on
	Unit   string // the unit a bare number is read in, e.g. 8kB, ms; "" if none
	Source string // "default", "file" (DIR/heapkv.conf) or "options"
	Desc   string
	// Note is set for a setting that is accepted but has no effect yet,
	// saying so ("not in effect yet: ...").
	Note string
}

type settingKind int8

const (
	kindBytes settingKind = iota
	kindDuration
	kindInt
	kindFloat
	kindToggle
	kindEnum
)

// settingDef describes a parameter: how to read it from heapkv.conf, its
// default and range, and the Options field it lives in.
type settingDef struct {
	name     string
	kind     settingKind
	unit     string  // base unit of a bare number: B, kB, 8kB, MB, us, ms, s
	def      string  // default, in conf syntax
	min, max float64 // in bytes, nanoseconds, or plain
	enum     []string
	desc     string
	// field returns a pointer to the Options field.
	field func(o *Options) any
	// special allows values outside min..max (wal_buffers = -1).
	special []float64
	// notInEffect says why a setting accepted for PostgreSQL compatibility
	// does nothing yet; SHOW says so rather than pretend.
	notInEffect string
}

// settingDefs is the settings table. Defaults and lower bounds come from
// the named constants of the subsystem that owns the setting, formatted
// here in conf syntax; config's subsystem methods (below) turn the resolved
// values into each subsystem's Config.
var settingDefs = []settingDef{
	{name: "shared_buffers", kind: kindBytes, unit: "8kB", def: formatBytes(pagecache.DefaultSharedBuffers), min: pagecache.MinSharedBuffers, max: 1 << 40,
		desc: "buffer pool over heap and index files", field: func(o *Options) any { return &o.SharedBuffers }},
	{name: "wal_buffers", kind: kindBytes, unit: "8kB", def: "-1", min: xlog.MinWALBuffers, max: 1 << 30, special: []float64{-1},
		desc: "WAL buffer ring; -1: 1/32 of shared_buffers within 64kB..16MB", field: func(o *Options) any { return &o.WALBuffers }},
	{name: "work_mem", kind: kindBytes, unit: "kB", def: formatBytes(sortspill.DefaultWorkMem), min: sortspill.MinBudget, max: 1 << 40,
		desc: "memory of one sort or hash before it spills", field: func(o *Options) any { return &o.WorkMem }},
	{name: "temp_file_limit", kind: kindBytes, unit: "kB", def: "-1", min: 0, max: 1 << 50, special: []float64{sortspill.NoTempFileLimit},
		desc: "bytes one operation's temp files may hold at once; -1: no limit", field: func(o *Options) any { return &o.TempFileLimit }},
	{name: "log_temp_files", kind: kindBytes, unit: "kB", def: "-1", min: 0, max: 1 << 50, special: []float64{sortspill.NoTempFileLimit},
		desc: "log temp files of at least this size when removed; -1: none", field: func(o *Options) any { return &o.LogTempFiles }},
	{name: "maintenance_work_mem", kind: kindBytes, unit: "kB", def: formatBytes(defaultMaintenanceWorkMem), min: 1 << 20, max: 1 << 40,
		desc: "memory of VACUUM and bulk load", field: func(o *Options) any { return &o.MaintenanceWorkMem }, notInEffect: "not in effect yet: VACUUM and bulk load are not built"},
	{name: "temp_buffers", kind: kindBytes, unit: "8kB", def: formatBytes(defaultTempBuffers), min: 800 << 10, max: 1 << 40,
		desc: "local buffers of temporary keyspaces", field: func(o *Options) any { return &o.TempBuffers }, notInEffect: "not in effect yet: temporary keyspaces are not built"},
	{name: "transaction_buffers", kind: kindBytes, unit: "8kB", def: formatBytes(txn.DefaultCLOGBuffers * txn.CLOGPageSize), min: txn.MinCLOGBuffers * txn.CLOGPageSize, max: 1 << 30,
		desc: "commit log (CLOG) cache", field: func(o *Options) any { return &o.TransactionBuffers }},
	{name: "synchronous_commit", kind: kindToggle, def: base.On.String(),
		desc: "wait for the commit record to be durable", field: func(o *Options) any { return &o.SynchronousCommit }},
	{name: "commit_delay", kind: kindDuration, unit: "us", def: formatDuration(xlog.DefaultCommitDelay), min: 0, max: float64(100 * time.Millisecond),
		desc: "group-commit leader's wait for more commits", field: func(o *Options) any { return &o.CommitDelay }},
	{name: "commit_siblings", kind: kindInt, def: strconv.Itoa(xlog.DefaultCommitSiblings), min: 0, max: 1000,
		desc: "active transactions needed before commit_delay applies", field: func(o *Options) any { return &o.CommitSiblings }},
	{name: "wal_writer_delay", kind: kindDuration, unit: "ms", def: formatDuration(xlog.DefaultWALWriterDelay), min: float64(time.Millisecond), max: float64(10 * time.Second),
		desc: "WAL writer's sleep between flushes of asynchronous commits", field: func(o *Options) any { return &o.WALWriterDelay }},
	{name: "checkpoint_timeout", kind: kindDuration, unit: "s", def: formatDuration(xlog.DefaultCheckpointTimeout), min: float64(time.Second), max: float64(24 * time.Hour),
		desc: "time between automatic checkpoints", field: func(o *Options) any { return &o.CheckpointTimeout }},
	{name: "max_wal_size", kind: kindBytes, unit: "MB", def: formatBytes(xlog.DefaultMaxWALSize), min: 2 << 20, max: 1 << 50,
		desc: "WAL size that triggers a checkpoint", field: func(o *Options) any { return &o.MaxWALSize }},
	{name: "full_page_writes", kind: kindToggle, def: base.On.String(),
		desc: "log a page's full image at its first change after a checkpoint", field: func(o *Options) any { return &o.FullPageWrites }},
	{name: "wal_compression", kind: kindEnum, def: xlog.CompressionNone.String(), enum: compressionNames(),
		desc: "compression of full-page images", field: func(o *Options) any { return &o.WALCompression }},
	{name: "data_checksums", kind: kindToggle, def: base.On.String(),
		desc: "page checksums (fixed when the directory is created)", field: func(o *Options) any { return &o.DataChecksums }},
	{name: "deadlock_timeout", kind: kindDuration, unit: "ms", def: formatDuration(txn.DefaultDeadlockTimeout), min: float64(time.Millisecond), max: float64(time.Hour),
		desc: "wait before checking for a deadlock", field: func(o *Options) any { return &o.DeadlockTimeout }},
	{name: "lock_timeout", kind: kindDuration, unit: "ms", def: formatDuration(txn.DefaultLockTimeout), min: 0, max: float64(24 * time.Hour),
		desc: "longest wait for a row lock before the statement fails; 0: no limit", field: func(o *Options) any { return &o.LockTimeout }},
	{name: "bgwriter_delay", kind: kindDuration, unit: "ms", def: formatDuration(pagecache.DefaultBgWriterDelay), min: float64(10 * time.Millisecond), max: float64(10 * time.Second),
		desc: "background writer's sleep between rounds", field: func(o *Options) any { return &o.BgWriterDelay }},
	{name: "bgwriter_lru_maxpages", kind: kindInt, def: strconv.Itoa(pagecache.DefaultBgWriterLRUMaxPages), min: 0, max: 1 << 30,
		desc: "pages the background writer writes per round at most; 0: none", field: func(o *Options) any { return &o.BgWriterLRUMaxPages }},
	{name: "bgwriter_lru_multiplier", kind: kindFloat, def: strconv.FormatFloat(pagecache.DefaultBgWriterLRUMultiplier, 'g', -1, 64), min: 0, max: 10,
		desc: "how far ahead of demand the background writer cleans", field: func(o *Options) any { return &o.BgWriterLRUMultiplier }},
	{name: "autovacuum", kind: kindToggle, def: defaultAutovacuum.String(),
		desc: "background vacuum of dead versions", field: func(o *Options) any { return &o.Autovacuum }, notInEffect: "not in effect yet: autovacuum is not built"},
}

// compressionNames lists wal_compression's values: xlog's names of its
// compressions, by number.
func compressionNames() []string {
	var names []string
	for c := xlog.CompressionNone; c <= xlog.CompressionZstd; c++ {
		names = append(names, c.String())
	}
	return names
}

func findSetting(name string) *settingDef {
	for i := range settingDefs {
		if settingDefs[i].name == name {
			return &settingDefs[i]
		}
	}
	return nil
}

var memoryUnits = map[string]float64{"B": 1, "kB": 1 << 10, "8kB": 8 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
var timeUnits = map[string]float64{
	"us": float64(time.Microsecond), "ms": float64(time.Millisecond), "s": float64(time.Second),
	"min": float64(time.Minute), "h": float64(time.Hour), "d": float64(24 * time.Hour),
}

// parseValue reads a value in conf syntax for def into the field of o.
func (def *settingDef) parseValue(o *Options, raw string) error {
	v := strings.TrimSpace(raw)
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		v = strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	switch def.kind {
	case kindBytes, kindDuration:
		units := memoryUnits
		if def.kind == kindDuration {
			units = timeUnits
		}
		num, unit := splitNumber(v)
		n, err := strconv.ParseFloat(num, 64)
		if err != nil || num == "" {
			return fmt.Errorf("invalid value %q for %s", v, def.name)
		}
		if unit == "" {
			unit = def.unit
		}
		mult, ok := units[unit]
		if !ok {
			return fmt.Errorf("invalid unit %q for %s (use %s)", unit, def.name, unitList(units))
		}
		if n < 0 && contains(def.special, n) {
			return setField(def, o, int64(n))
		}
		total := n * mult
		if total < def.min || total > def.max || math.IsNaN(total) {
			return fmt.Errorf("%s = %s is outside %s..%s", def.name, v, def.format(def.min), def.format(def.max))
		}
		return setField(def, o, int64(total))
	case kindInt, kindFloat:
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("invalid value %q for %s", v, def.name)
		}
		if def.kind == kindInt && n != math.Trunc(n) {
			return fmt.Errorf("%s takes a whole number, got %s", def.name, v)
		}
		if n < def.min || n > def.max {
			return fmt.Errorf("%s = %s is outside %g..%g", def.name, v, def.min, def.max)
		}
		if def.kind == kindInt {
			return setField(def, o, int64(n))
		}
		*(def.field(o).(*float64)) = n
		return nil
	case kindToggle:
		on, ok := parseBool(v)
		if !ok {
			return fmt.Errorf("%s takes on or off, got %q", def.name, v)
		}
		t := base.Off
		if on {
			t = base.On
		}
		*(def.field(o).(*Toggle)) = t
		return nil
	case kindEnum:
		if !contains(def.enum, strings.ToLower(v)) {
			return fmt.Errorf("%s takes one of %s, got %q", def.name, strings.Join(def.enum, ", "), v)
		}
		*(def.field(o).(*string)) = strings.ToLower(v)
		return nil
	}
	return fmt.Errorf("%s: unknown kind", def.name)
}

func setField(def *settingDef, o *Options, n int64) error {
	switch p := def.field(o).(type) {
	case *int64:
		*p = n
	case *int:
		*p = int(n)
	case *time.Duration:
		*p = time.Duration(n)
	default:
		return fmt.Errorf("%s: field of type %T", def.name, p)
	}
	return nil
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func unitList(units map[string]float64) string {
	if _, ok := units["kB"]; ok {
		return "B, kB, MB, GB, TB"
	}
	return "us, ms, s, min, h, d"
}

func splitNumber(v string) (num, unit string) {
	i := 0
	for i < len(v) && (v[i] == '-' || v[i] == '+' || v[i] == '.' || (v[i] >= '0' && v[i] <= '9')) {
		i++
	}
	return v[:i], strings.TrimSpace(v[i:])
}

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		return true, true
	case "off", "false", "no", "0":
		return false, true
	}
	return false, false
}

// isSet reports whether the Options field of def holds a non-zero value.
func (def *settingDef) isSet(o *Options) bool {
	switch p := def.field(o).(type) {
	case *int64:
		return *p != 0
	case *int:
		return *p != 0
	case *time.Duration:
		return *p != 0
	case *float64:
		return *p != 0
	case *string:
		return *p != ""
	case *Toggle:
		return *p != base.On
	}
	return false
}

// copyField copies def's field from src to dst.
func (def *settingDef) copyField(dst, src *Options) {
	switch p := def.field(dst).(type) {
	case *int64:
		*p = *def.field(src).(*int64)
	case *int:
		*p = *def.field(src).(*int)
	case *time.Duration:
		*p = *def.field(src).(*time.Duration)
	case *float64:
		*p = *def.field(src).(*float64)
	case *string:
		*p = *def.field(src).(*string)
	case *Toggle:
		*p = *def.field(src).(*Toggle)
	}
}

// show formats the current value of def in o, PostgreSQL style.
func (def *settingDef) show(o *Options) string {
	switch p := def.field(o).(type) {
	case *int64:
		if def.kind == kindBytes {
			if *p < 0 {
				return strconv.FormatInt(*p, 10)
			}
			return formatBytes(*p)
		}
		return strconv.FormatInt(*p, 10)
	case *int:
		return strconv.Itoa(*p)
	case *time.Duration:
		return formatDuration(*p)
	case *float64:
		return strconv.FormatFloat(*p, 'g', -1, 64)
	case *string:
		return *p
	case *Toggle:
		return p.String()
	}
	return "?"
}

func (def *settingDef) format(v float64) string {
	if def.kind == kindBytes {
		return formatBytes(int64(v))
	}
	return formatDuration(time.Duration(v))
}

func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		size time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"min", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if d >= u.size && d%u.size == 0 {
			return strconv.FormatInt(int64(d/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d/time.Microsecond), 10) + "us"
}

// config is the resolved configuration: the value of every setting and
// where it came from.
type config struct {
	Options
	source map[string]string
}

// maxConfLine bounds a line of heapkv.conf: no setting needs more, and a
// longer line is a damaged or wrong file, not something to skip.
const maxConfLine = 64 << 10

// resolveConfig combines the defaults, the conf file's text (if any) and
// the caller's options, in that order of increasing precedence. A bad line
// of the file is an error naming the line.
func resolveConfig(confName string, conf []byte, opts *Options) (*config, error) {
	c := &config{source: make(map[string]string, len(settingDefs))}
	for i := range settingDefs {
		def := &settingDefs[i]
		if err := def.parseValue(&c.Options, def.def); err != nil {
			return nil, fmt.Errorf("kv: default of %s: %w", def.name, err)
		}
		c.source[def.name] = "default"
	}
	for lineNo, raw := range bytes.Split(conf, []byte("\n")) {
		lineNo++
		if len(raw) > maxConfLine {
			return nil, fmt.Errorf("%w: %s line %d: %d bytes long, at most %d", ErrBadSetting, confName, lineNo, len(raw), maxConfLine)
		}
		line := stripComment(strings.TrimSuffix(string(raw), "\r"))
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			// PostgreSQL also accepts "name value".
			fields := strings.Fields(line)
			if len(fields) != 2 {
				return nil, fmt.Errorf("%w: %s line %d: expected name = value", ErrBadSetting, confName, lineNo)
			}
			name, value = fields[0], fields[1]
		}
		name = strings.ToLower(strings.TrimSpace(name))
		def := findSetting(name)
		if def == nil {
			return nil, fmt.Errorf("%w: %s line %d: unrecognized parameter %q", ErrBadSetting, confName, lineNo, name)
		}
		if err := def.parseValue(&c.Options, value); err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrBadSetting, confName, lineNo, err)
		}
		c.source[name] = "file"
	}
	if opts != nil {
		for i := range settingDefs {
			def := &settingDefs[i]
			if !def.isSet(opts) && !opts.explicit[def.name] {
				continue
			}
			// Check the option's value by the same rules as the file's.
			var probe Options
			def.copyField(&probe, opts)
			if err := def.parseValue(&probe, def.show(&probe)); err != nil {
				return nil, fmt.Errorf("%w: Options: %v", ErrBadSetting, err)
			}
			def.copyField(&c.Options, opts)
			c.source[def.name] = "options"
		}
		c.Logger = opts.Logger
		c.walSegmentSize = opts.walSegmentSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// stripComment removes a # comment that is not inside quotes.
func stripComment(line string) string {
	inQuote := false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\'':
			inQuote = !inQuote
		case '#':
			if !inQuote {
				return line[:i]
			}
		}
	}
	return line
}

// settings lists every setting of c.
func (c *config) settings() []Setting {
	out := make([]Setting, 0, len(settingDefs))
	for i := range settingDefs {
		def := &settingDefs[i]
		out = append(out, Setting{Name: def.name, Value: def.show(&c.Options), Unit: def.unit, Source: c.source[def.name], Desc: def.desc, Note: def.notInEffect})
	}
	return out
}

// The finished configurations of the subsystems, every value resolved
// from c here and nowhere else. What links one subsystem to another is not
// in them: openEngine wires the log's count of active transactions once
// the transaction manager exists, and hands the pool the log's Flush.

func (c *config) tempOptions() sortspill.TempOptions {
	return sortspill.TempOptions{Limit: c.TempFileLimit, LogAbove: c.LogTempFiles, Logger: c.Logger}
}

func (c *config) poolConfig(halt *base.Halt, flushWAL func(base.LSN) error) pagecache.Config {
	maxPages := c.BgWriterLRUMaxPages
	if maxPages == 0 {
		maxPages = -1 // bgwriter_lru_maxpages = 0 turns writing off; the pool's 0 is its default
	}
	return pagecache.Config{
		SharedBuffers:         int(c.SharedBuffers),
		FlushWAL:              flushWAL,
		DataChecksums:         c.DataChecksums,
		BgWriterDelay:         c.BgWriterDelay,
		BgWriterLRUMaxPages:   maxPages,
		BgWriterLRUMultiplier: c.BgWriterLRUMultiplier,
		Logger:                c.Logger,
		Halt:                  halt,
	}
}

func (c *config) walConfig(halt *base.Halt) xlog.Config {
	walBuffers := c.WALBuffers
	if walBuffers <= 0 {
		walBuffers = xlog.WALBuffersFor(c.SharedBuffers)
	}
	comp := xlog.CompressionNone
	for _, x := range []xlog.Compression{xlog.CompressionS2, xlog.CompressionZstd} {
		if c.WALCompression == x.String() {
			comp = x
		}
	}
	siblings := c.CommitSiblings
	if siblings == 0 {
		siblings = -1 // commit_siblings = 0: no siblings needed; the log's 0 is its default
	}
	return xlog.Config{
		WALBuffers:        int(walBuffers),
		SegmentSize:       c.walSegmentSize,
		CommitDelay:       c.CommitDelay,
		CommitSiblings:    siblings,
		WALWriterDelay:    c.WALWriterDelay,
		SynchronousCommit: c.SynchronousCommit,
		FullPageWrites:    c.FullPageWrites,
		WALCompression:    comp,
		CheckpointTimeout: c.CheckpointTimeout,
		MaxWALSize:        c.MaxWALSize,
		Logger:            c.Logger,
		Halt:              halt,
	}
}

func (c *config) txnConfig(halt *base.Halt) txn.Config {
	return txn.Config{
		CLOGBuffers:     int(c.TransactionBuffers / txn.CLOGPageSize),
		DeadlockTimeout: c.DeadlockTimeout,
		LockTimeout:     c.LockTimeout,
		Logger:          c.Logger,
		Halt:            halt,
	}
}
