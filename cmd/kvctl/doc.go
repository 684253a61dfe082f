// Command kvctl is the operator's tool for a heapkv data directory. It uses
// only package kv's public API, so everything it does a program embedding
// heapkv can do too.
//
//	kvctl [-d DIR] [--shared-buffers SIZE] [--synchronous-commit on|off] [-c name=value]... COMMAND [flags] [args]
//
// The data directory is -d or --dir, else $HEAPKV_DIR, else ./heapkv-data.
// Global flags may also follow the command (kvctl get k -d DIR). SIZE and
// every -c value have heapkv.conf's syntax (a bare shared_buffers number
// counts 8kB pages, as in PostgreSQL). A flag's setting wins over
// DIR/heapkv.conf, which wins over the defaults, even when the flag sets a
// setting back to its default (synchronous_commit on over a file that
// turned it off).
//
// Commands that only read (get, scan, agg, explain, stats, show, check,
// keyspace list)
// refuse a data directory that does not exist instead of creating one;
// commands that write create it.
//
// # Commands
//
//	get [--keyspace NAME] [--raw] KEY       print KEY's value (exit 1 if absent)
//	put [--keyspace NAME] KEY VALUE         set KEY; VALUE - reads stdin to EOF
//	del [--keyspace NAME] KEY...            delete keys (absent ones are no error)
//	scan [--start K] [--end K] [--prefix P] [--limit N] [--reverse]
//	     [--order-by key|value] [--desc] [--offset N] [--scan index|bitmap]
//	     [--keyspace NAME] [--format text|json]
//	                                        list key/value pairs in [start, end);
//	                                        by value sorts under work_mem (kv.Tx.Query)
//	agg [--start K] [--end K] [--prefix P]
//	    [--group-by-prefix SEP | --group-by-length N | --group-by-value]
//	    [--count] [--count-distinct] [--min] [--max] [--sum] [--ordered]
//	    [--keyspace NAME] [--format text|json]
//	                                        one line per group: the group, then the
//	                                        aggregates asked for (kv.Tx.Aggregate)
//	explain [--analyze] scan|agg FLAGS...   the plan, as EXPLAIN [ANALYZE]
//	load [--batch N] [--keyspace NAME] [--format text|json] [--progress] FILE|-
//	                                        bulk load key/value lines
//	stats [--format text|json]              the database's counters (kv.DB.Stats)
//	show [-v] [--format text|json] [NAME]   settings, like SHOW ALL / SHOW NAME; the
//	                                        note column marks settings not in effect yet
//	checkpoint                              force a checkpoint
//	analyze [--keyspace NAME]               refresh the planner's statistics (kv.DB.Analyze)
//	check                                   verify every heap and index page
//	keyspace create NAME                    create a keyspace
//	keyspace drop NAME                      drop a keyspace and its data
//	keyspace list                           list the named keyspaces
//	help [COMMAND]                          usage
//
// Arguments are taken verbatim, as bytes; a key that begins with "-" goes
// after "--" (kvctl del -- -k). get prints the value and a newline; with
// --raw, the value's bytes alone (kvctl get --raw k | kvctl put k2 -
// copies a value exactly).
//
// # Text format
//
// scan --format text writes, and load --format text reads, one pair per
// line: KEY, a tab, VALUE, a newline. A key or value is written verbatim
// when it is valid UTF-8 of printable characters (strconv.IsPrint, so no
// tab, newline or other control character) that does not begin with a
// double quote; otherwise it is written as a Go double-quoted string
// (strconv.Quote), whose \t, \n, \x00, \u00e9 ... escapes give back the
// bytes exactly. load unquotes a field that begins with a double quote
// (strconv.Unquote) and takes any other field verbatim; the value is the
// rest of the line after the first tab, a trailing carriage return is
// dropped, and empty lines are skipped. So scan's output loads back as it
// was.
//
// # JSON format
//
// scan --format json writes, and load --format json reads, one JSON object
// per line:
//
//	{"key":"user/1","value":"alice"}
//	{"key":"blob","value_base64":"AP8Q"}
//
// A key or value that is valid UTF-8 is a JSON string under "key" or
// "value"; one that is not is base64 (standard encoding, with padding)
// under "key_base64" or "value_base64". Each object has exactly one of the
// two key fields and one of the two value fields.
//
// # Loading
//
// load commits every --batch lines (default 1000) in one transaction; if a
// line is bad it stops, naming the line, and the batches before it stay
// committed (it says how many rows). On a terminal, or with --progress, it
// draws a progress bar on stderr; otherwise it writes a count line to stderr
// every second. At the end it prints the rows loaded and rows per second on
// stdout.
//
// # Exit status
//
// 0 on success; 1 for an error of data or state (a key not found, a
// problem found by check, a data directory in use, a bad heapkv.conf line,
// an I/O error); 2 for a usage error (unknown command, bad flag, wrong
// arguments). Errors are written to stderr prefixed with "kvctl: ".
//
// # Crash load
//
// The hidden command crashload drives the SIGKILL test (crash_test.go):
//
//	kvctl crashload [--seed N] [--keys N] [--hot N] [--delete-lag N] [--workers N] [--shared KS,...] [--ddl]
//	                [--2pc [--prepare-pause D] [--prepared-ddl]] [--checkpoint-every N] [--stop-after N] [--phases]
//	kvctl crashload --dump [--probe N] --shared KS,...
//
// runs transactions until killed, printing "ack <id>" after each commit;
// crashload.go describes what each transaction writes, the other output
// lines, and what a checker may conclude after a crash.
package main
