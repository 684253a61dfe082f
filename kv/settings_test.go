package kv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

func TestResolveConfigDefaults(t *testing.T) {
	c, err := resolveConfig("heapkv.conf", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"shared_buffers": "128MB", "wal_buffers": "-1", "work_mem": "4MB", "maintenance_work_mem": "64MB",
		"temp_buffers": "8MB", "synchronous_commit": "on", "commit_delay": "0", "commit_siblings": "5",
		"checkpoint_timeout": "5min", "max_wal_size": "1GB", "full_page_writes": "on", "data_checksums": "on",
		"deadlock_timeout": "1s", "autovacuum": "on", "wal_compression": "off", "bgwriter_delay": "200ms",
	}
	for _, s := range c.settings() {
		if w, ok := want[s.Name]; ok && s.Value != w {
			t.Errorf("%s = %s, want %s", s.Name, s.Value, w)
		}
		if s.Source != "default" {
			t.Errorf("%s source %s", s.Name, s.Source)
		}
	}
	if c.SharedBuffers != 128<<20 || c.CheckpointTimeout != 5*time.Minute || c.DeadlockTimeout != time.Second {
		t.Fatalf("defaults: %+v", c.Options)
	}
	// The settings table's defaults are the subsystems' own.
	pc, wc, tc := c.poolConfig(nil, nil), c.walConfig(nil), c.txnConfig(nil)
	if pc.SharedBuffers != pagecache.DefaultSharedBuffers || pc.BgWriterDelay != pagecache.DefaultBgWriterDelay ||
		pc.BgWriterLRUMaxPages != pagecache.DefaultBgWriterLRUMaxPages ||
		pc.BgWriterLRUMultiplier != pagecache.DefaultBgWriterLRUMultiplier || pc.DataChecksums != base.On {
		t.Errorf("pool config from defaults: %+v", pc)
	}
	if wc.WALBuffers != xlog.DefaultWALBuffers || wc.CommitDelay != xlog.DefaultCommitDelay ||
		wc.CommitSiblings != xlog.DefaultCommitSiblings || wc.WALWriterDelay != xlog.DefaultWALWriterDelay ||
		wc.CheckpointTimeout != xlog.DefaultCheckpointTimeout || wc.MaxWALSize != xlog.DefaultMaxWALSize ||
		wc.SynchronousCommit != base.On || wc.FullPageWrites != base.On || wc.WALCompression != xlog.CompressionNone {
		t.Errorf("log config from defaults: %+v", wc)
	}
	if tc.CLOGBuffers != txn.DefaultCLOGBuffers || tc.LockTimeout != txn.DefaultLockTimeout {
		t.Errorf("txn config from defaults: %+v", tc)
	}
}

// TestSubsystemConfigs: each conf line reaches its subsystem's Config with
// the subsystem's meaning, including the values whose spelling differs
// (a PostgreSQL 0 that means "none" where the subsystem's 0 means default).
func TestSubsystemConfigs(t *testing.T) {
	for _, tc := range []struct {
		conf  string
		check func(pagecache.Config, xlog.Config, txn.Config) bool
	}{
		{"bgwriter_lru_maxpages = 0", func(p pagecache.Config, _ xlog.Config, _ txn.Config) bool { return p.BgWriterLRUMaxPages < 0 }},
		{"bgwriter_lru_maxpages = 7", func(p pagecache.Config, _ xlog.Config, _ txn.Config) bool { return p.BgWriterLRUMaxPages == 7 }},
		{"data_checksums = off", func(p pagecache.Config, _ xlog.Config, _ txn.Config) bool { return p.DataChecksums == base.Off }},
		{"shared_buffers = 64MB", func(p pagecache.Config, w xlog.Config, _ txn.Config) bool {
			return p.SharedBuffers == 64<<20 && w.WALBuffers == 2<<20
		}},
		{"shared_buffers = 1GB", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool {
			return w.WALBuffers == xlog.MaxAutoWALBuffers
		}},
		{"wal_buffers = 1MB", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool { return w.WALBuffers == 1<<20 }},
		{"synchronous_commit = off", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool { return w.SynchronousCommit == base.Off }},
		{"full_page_writes = off", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool { return w.FullPageWrites == base.Off }},
		{"wal_compression = zstd", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool {
			return w.WALCompression == xlog.CompressionZstd
		}},
		{"wal_compression = s2", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool {
			return w.WALCompression == xlog.CompressionS2
		}},
		{"commit_siblings = 0", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool { return w.CommitSiblings < 0 }},
		{"commit_delay = 10", func(_ pagecache.Config, w xlog.Config, _ txn.Config) bool {
			return w.CommitDelay == 10*time.Microsecond
		}},
		{"transaction_buffers = 64kB", func(_ pagecache.Config, _ xlog.Config, x txn.Config) bool {
			return x.CLOGBuffers == 64<<10/txn.CLOGPageSize
		}},
		{"lock_timeout = 2s", func(_ pagecache.Config, _ xlog.Config, x txn.Config) bool { return x.LockTimeout == 2*time.Second }},
	} {
		c, err := resolveConfig("heapkv.conf", []byte(tc.conf+"\n"), nil)
		if err != nil {
			t.Errorf("%s: %v", tc.conf, err)
			continue
		}
		p, w, x := c.poolConfig(nil, nil), c.walConfig(nil), c.txnConfig(nil)
		if !tc.check(p, w, x) {
			t.Errorf("%s: pool %+v\nlog %+v\ntxn %+v", tc.conf, p, w, x)
		}
	}
}

func TestResolveConfigFileAndOptions(t *testing.T) {
	conf := `# heapkv.conf
shared_buffers = 256MB          # a comment
work_mem = 65536                # bare number: kB
wal_buffers = 2048              # bare number: 8kB pages = 16MB
checkpoint_timeout = 30         # bare number: seconds
commit_delay = 10               # microseconds
deadlock_timeout = '250ms'
synchronous_commit = off
wal_compression = zstd
bgwriter_lru_multiplier 3.5
`
	c, err := resolveConfig("heapkv.conf", []byte(conf), &Options{SharedBuffers: 512 << 20, FullPageWrites: Disabled})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name       string
		got, want  any
		wantSource string
	}{
		{"shared_buffers", c.SharedBuffers, int64(512 << 20), "options"},
		{"work_mem", c.WorkMem, int64(64 << 20), "file"},
		{"wal_buffers", c.WALBuffers, int64(16 << 20), "file"},
		{"checkpoint_timeout", c.CheckpointTimeout, 30 * time.Second, "file"},
		{"commit_delay", c.CommitDelay, 10 * time.Microsecond, "file"},
		{"deadlock_timeout", c.DeadlockTimeout, 250 * time.Millisecond, "file"},
		{"synchronous_commit", c.SynchronousCommit, SyncOff, "file"},
		{"wal_compression", c.WALCompression, "zstd", "file"},
		{"bgwriter_lru_multiplier", c.BgWriterLRUMultiplier, 3.5, "file"},
		{"full_page_writes", c.FullPageWrites, Disabled, "options"},
		{"max_wal_size", c.MaxWALSize, int64(1 << 30), "default"},
	}
	for _, ck := range checks {
		if ck.got != ck.want || c.source[ck.name] != ck.wantSource {
			t.Errorf("%s = %v (%s), want %v (%s)", ck.name, ck.got, c.source[ck.name], ck.want, ck.wantSource)
		}
	}
}

func TestResolveConfigErrors(t *testing.T) {
	tests := []struct {
		name, conf string
		opts       *Options
		wantInErr  string
	}{
		{"unknown name", "shared_bufers = 1MB", nil, `line 1: unrecognized parameter "shared_bufers"`},
		{"bad unit", "\n\nwork_mem = 4 parsecs", nil, "line 3: invalid unit"},
		{"time unit on memory", "work_mem = 4s", nil, "invalid unit"},
		{"below minimum", "shared_buffers = 8kB", nil, "outside"},
		{"not a number", "commit_siblings = many", nil, "invalid value"},
		{"fraction for integer", "commit_siblings = 1.5", nil, "whole number"},
		{"bad bool", "autovacuum = perhaps", nil, "on or off"},
		{"bad enum", "wal_compression = lz77", nil, "one of off, s2, zstd"},
		{"no equals", "shared_buffers", nil, "expected name = value"},
		{"option out of range", "", &Options{SharedBuffers: 100}, "Options"},
		{"option bad enum", "", &Options{WALCompression: "gzip"}, "Options"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := resolveConfig("heapkv.conf", []byte(tt.conf), tt.opts)
			if !errors.Is(err, ErrBadSetting) || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Fatalf("error %v, want ErrBadSetting containing %q", err, tt.wantInErr)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{formatBytes(128 << 20), "128MB"}, {formatBytes(1536), "1536B"}, {formatBytes(3 << 10), "3kB"},
		{formatBytes(1 << 30), "1GB"}, {formatDuration(5 * time.Minute), "5min"}, {formatDuration(90 * time.Second), "90s"},
		{formatDuration(1500 * time.Microsecond), "1500us"}, {formatDuration(0), "0"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}

func TestOptionsSetWinsOverFile(t *testing.T) {
	var o Options
	if err := o.Set("synchronous_commit", "on"); err != nil {
		t.Fatal(err)
	}
	if err := o.Set("Shared_Buffers", "64MB"); err != nil {
		t.Fatal(err)
	}
	if err := o.Set("no_such", "1"); !errors.Is(err, ErrBadSetting) {
		t.Fatalf("unknown name: %v", err)
	}
	if err := o.Set("work_mem", "lots"); !errors.Is(err, ErrBadSetting) {
		t.Fatalf("bad value: %v", err)
	}
	c, err := resolveConfig("heapkv.conf", []byte("synchronous_commit = off\nshared_buffers = 1GB\n"), &o)
	if err != nil {
		t.Fatal(err)
	}
	if c.SynchronousCommit != SyncOn || c.source["synchronous_commit"] != "options" || c.SharedBuffers != 64<<20 {
		t.Fatalf("Set lost to the file: sync %v (%s), shared_buffers %d", c.SynchronousCommit, c.source["synchronous_commit"], c.SharedBuffers)
	}
}

// A line too long for a line scanner used to end the file silently, so
// the settings after it were ignored (issue 11).
func TestConfLongLine(t *testing.T) {
	long := "# " + strings.Repeat("x", 70<<10) + "\n"
	_, err := resolveConfig("heapkv.conf", []byte("work_mem = 8MB\n"+long+"shared_buffers = 1MB\n"), nil)
	if !errors.Is(err, ErrBadSetting) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("conf with a 70 KiB line: %v, want ErrBadSetting naming line 2", err)
	}
	c, err := resolveConfig("heapkv.conf", []byte("# "+strings.Repeat("y", 60<<10)+"\r\nshared_buffers = 1MB\r\n"), nil)
	if err != nil || c.SharedBuffers != 1<<20 {
		t.Fatalf("a 60 KiB comment, CRLF lines: %v, shared_buffers %d", err, c.SharedBuffers)
	}
}

func FuzzConf(f *testing.F) {
	f.Add([]byte("shared_buffers = 256MB  # comment\nwork_mem 8MB\n"))
	f.Add([]byte("synchronous_commit = off\nwal_compression = 'zstd'\n"))
	f.Add([]byte("bogus = 1\n"))
	f.Add([]byte("shared_buffers = -1\n\n\n#\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := resolveConfig("heapkv.conf", b, nil)
		if err != nil {
			if !errors.Is(err, ErrBadSetting) {
				t.Fatalf("error without ErrBadSetting: %v", err)
			}
			return
		}
		// Whatever was accepted shows back as values the parser accepts.
		var text strings.Builder
		for _, s := range c.settings() {
			fmt.Fprintf(&text, "%s = '%s'\n", s.Name, s.Value)
		}
		if _, err := resolveConfig("shown", []byte(text.String()), nil); err != nil {
			t.Fatalf("SHOW output of an accepted file does not parse: %v\n%s", err, text.String())
		}
	})
}
