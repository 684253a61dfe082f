package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/heapkv/heapkv/kv"
)

// command is one subcommand.
type command struct {
	name    string
	args    string // the synopsis after the name
	summary string
	hidden  bool
	run     func(env *env, args []string) error
}

var commands []*command

func init() {
	// Assigned here rather than in the declaration: the help command reads
	// the table it is in.
	commands = []*command{
		{name: "get", args: "[--keyspace NAME] [--raw] KEY", summary: "print KEY's value (exit 1 if absent)", run: runGet},
		{name: "put", args: "[--keyspace NAME] KEY VALUE", summary: "set KEY to VALUE (- reads VALUE from stdin)", run: runPut},
		{name: "del", args: "[--keyspace NAME] KEY...", summary: "delete keys (absent keys are no error)", run: runDel},
		{name: "scan", args: "[--start K] [--end K] [--prefix P] [--order-by key|value] [--desc] [--offset N] [--limit N] [--scan index|bitmap] [--reverse] [--keyspace NAME] [--format text|json]", summary: "list key/value pairs in [start, end), in key or value order", run: runScan},
		{name: "agg", args: "[--start K] [--end K] [--prefix P] [--group-by-prefix SEP | --group-by-length N | --group-by-value] [--count] [--count-distinct] [--min] [--max] [--sum] [--ordered] [--keyspace NAME] [--format text|json]", summary: "aggregate the values of a range, per group", run: runAgg},
		{name: "explain", args: "[--analyze] scan|agg FLAGS...", summary: "print the plan of a scan or agg, as EXPLAIN [ANALYZE]", run: runExplain},
		{name: "load", args: "[--batch N] [--keyspace NAME] [--format text|json] [--progress] FILE|-", summary: "bulk load key/value lines, committing in batches", run: runLoad},
		{name: "stats", args: "[--format text|json]", summary: "print the database's counters", run: runStats},
		{name: "show", args: "[-v] [--format text|json] [NAME]", summary: "print settings, like PostgreSQL's SHOW ALL", run: runShow},
		{name: "checkpoint", summary: "force a checkpoint", run: runCheckpoint},
		{name: "analyze", args: "[--keyspace NAME]", summary: "refresh the planner's statistics of a keyspace, like ANALYZE", run: runAnalyze},
		{name: "check", summary: "verify every heap and index page (exit 1 on a problem)", run: runCheck},
		{name: "keyspace", args: "create NAME | drop NAME | list", summary: "create, drop or list named keyspaces", run: runKeyspace},
		{name: "help", args: "[COMMAND]", summary: "print usage", run: runHelp},
		{name: "crashload", args: "[--seed N] [--keys N] [--hot N] [--delete-lag N] [--workers N] [--shared KS,...] [--ddl] [--2pc [--prepare-pause D] [--prepared-ddl]] [--checkpoint-every N] [--stop-after N] [--phases] | --dump [--probe N] --shared KS,...", summary: "durable write load for the crash test (runs until killed)", hidden: true, run: runCrashload},
	}
}

func findCommand(name string) *command {
	i := slices.IndexFunc(commands, func(c *command) bool { return c.name == name })
	if i < 0 {
		return nil
	}
	return commands[i]
}

// env is what a command runs with: the global settings and the standard
// streams.
type env struct {
	globals
	stdin          io.Reader
	stdout, stderr io.Writer
}

// globals are the flags accepted before or after the command.
type globals struct {
	dir           string
	sharedBuffers string
	syncCommit    string
	settings      settingFlags // -c name=value, repeatable
}

// settingFlags collects -c name=value flags.
type settingFlags []string

func (s *settingFlags) String() string     { return strings.Join(*s, ",") }
func (s *settingFlags) Set(v string) error { *s = append(*s, v); return nil }

// globalFlags are the names register defines.
var globalFlags = []string{"d", "dir", "shared-buffers", "synchronous-commit", "c"}

// register defines the global flags on fs, keeping their current values.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.dir, "d", g.dir, "data `DIR`ectory (also --dir; default $HEAPKV_DIR or ./heapkv-data)")
	fs.StringVar(&g.dir, "dir", g.dir, "data `DIR`ectory")
	fs.StringVar(&g.sharedBuffers, "shared-buffers", g.sharedBuffers, "shared_buffers for this run, e.g. 64MB")
	fs.StringVar(&g.syncCommit, "synchronous-commit", g.syncCommit, "synchronous_commit for this run: on or off")
	fs.Var(&g.settings, "c", "set any setting for this run, in heapkv.conf syntax: -c `name=value` (repeatable)")
}

// options builds kv.Options from the global flags. Settings go through
// kv.Options.Set, which parses heapkv.conf's syntax and wins over the file
// even when the value is the default.
func (g *globals) options() (*kv.Options, error) {
	o := &kv.Options{}
	set := func(flag, name, value string) error {
		if err := o.Set(name, value); err != nil {
			return usageErrorf("%s: %v", flag, err)
		}
		return nil
	}
	if g.sharedBuffers != "" {
		if err := set("--shared-buffers", "shared_buffers", g.sharedBuffers); err != nil {
			return nil, err
		}
	}
	if g.syncCommit != "" {
		if err := set("--synchronous-commit", "synchronous_commit", g.syncCommit); err != nil {
			return nil, err
		}
	}
	for _, kvp := range g.settings {
		name, value, ok := strings.Cut(kvp, "=")
		if !ok {
			return nil, usageErrorf("-c takes name=value, got %q", kvp)
		}
		if err := set("-c", name, value); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// open opens the data directory. If mustExist, a missing directory is an
// error rather than a new database: commands that only read use it so that
// a mistyped -d does not leave an empty database behind.
func (e *env) open(mustExist bool) (*kv.DB, error) {
	opts, err := e.options()
	if err != nil {
		return nil, err
	}
	if mustExist {
		if _, err := os.Stat(e.dir); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no data directory at %s (commands that write create it)", e.dir)
		}
	}
	return kv.Open(e.dir, opts)
}

// withDB opens the data directory, runs fn and closes it, returning fn's
// error or else Close's.
func (e *env) withDB(mustExist bool, fn func(db *kv.DB) error) error {
	db, err := e.open(mustExist)
	if err != nil {
		return err
	}
	err = fn(db)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", e.dir, cerr)
	}
	return err
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errUsageShown is a usage error whose message the flag package has
// already written.
var errUsageShown = &usageError{}

// problemsError carries problems the command has already listed on stdout
// (check): exit status 1 with a one-line summary.
type problemsError struct{ n int }

func (e *problemsError) Error() string {
	if e.n == 1 {
		return "check found 1 problem"
	}
	return fmt.Sprintf("check found %d problems", e.n)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs kvctl with args and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	e.dir = os.Getenv("HEAPKV_DIR")
	if e.dir == "" {
		e.dir = "heapkv-data"
	}
	fs := flag.NewFlagSet("kvctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e.register(fs)
	fs.Usage = func() { printUsage(stderr) }
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		err = errUsageShown // the flag package has said what is wrong
	}
	if err == nil {
		rest := fs.Args()
		if len(rest) == 0 {
			printUsage(stderr)
			return 2
		}
		c := findCommand(rest[0])
		if c == nil {
			err = usageErrorf("unknown command %q (kvctl help lists them)", rest[0])
		} else {
			err = c.run(e, rest[1:])
		}
	}
	return report(stderr, err)
}

// report writes err to stderr and returns the exit status for it.
func report(stderr io.Writer, err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if ue != errUsageShown {
			fmt.Fprintf(stderr, "kvctl: %v\n", err)
		}
		return 2
	}
	fmt.Fprintf(stderr, "kvctl: %v\n", err)
	if errors.Is(err, kv.ErrLocked) {
		fmt.Fprintln(stderr, "kvctl: only one process may use a data directory at a time; stop that process or wait for it to exit")
	}
	return 1
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: kvctl [-d DIR] [--shared-buffers SIZE] [--synchronous-commit on|off] COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		if !c.hidden {
			fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nkvctl help COMMAND describes a command's flags. The data directory defaults to\n$HEAPKV_DIR, else ./heapkv-data.")
}

// flags returns a flag set for command c that also accepts the global
// flags, so that they may follow the command.
func (e *env) flags(c string) *flag.FlagSet {
	fs := flag.NewFlagSet(c, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	e.register(fs)
	fs.Usage = func() { commandUsage(e.stderr, fs, findCommand(c)) }
	return fs
}

func commandUsage(w io.Writer, fs *flag.FlagSet, c *command) {
	fmt.Fprintf(w, "usage: kvctl %s %s\n  %s\n", c.name, c.args, c.summary)
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(globalFlags, f.Name) {
			return
		}
		typ, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		if typ != "" {
			typ = " " + typ
		}
		fmt.Fprintf(w, "  %s%s%s\n    \t%s", dash, f.Name, typ, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parse parses args with fs, letting flags and positional arguments mix
// (kvctl get KEY --keyspace x) until a "--", after which everything is
// positional. It checks the number of positional arguments is in
// [minArgs, maxArgs] (maxArgs < 0: no limit).
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsageShown
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		fs.Usage()
		return nil, errUsageShown
	}
	return pos, nil
}

func runHelp(e *env, args []string) error {
	fs := e.flags("help")
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		printUsage(e.stdout)
		return nil
	}
	c := findCommand(pos[0])
	if c == nil {
		return usageErrorf("unknown command %q", pos[0])
	}
	// Ask the command itself, so that its flags are listed.
	he := *e
	he.stderr = e.stdout
	err = c.run(&he, []string{"-h"})
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
