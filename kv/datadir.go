package kv

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// The life of a data directory, as Open sees it:
//
//	nothing of ours ──► DIR/creating written (durably) ──► engine files made
//	   ──► checkpoint ──► DIR/format written (durably) ──► DIR/creating removed
//
// DIR/format says the directory is complete. DIR/creating says a creation
// is under way; it is written before any other engine file, so a directory
// holding engine files (control, wal/, clog/, base/) but no format file is
// provably a half-made creation only if the marker is there too. Only then
// does Open clear those files and create afresh. Engine files with neither
// marker nor format are somebody's data with a lost format file (a careless
// copy or restore): Open refuses them, naming the missing file, and deletes
// nothing, as PostgreSQL refuses a data directory without PG_VERSION.
const (
	formatFile   = "format"
	creatingFile = "creating"
)

// engineEntries are the names in DIR that hold data. heapkv.conf, LOCK and
// tmp/ are not data: a directory with only those is empty.
var engineEntries = []string{"control", "wal", "clog", "base"}

// prepareDir decides what Open does with db.dir: open it (creating false),
// or create a database in it (creating true, DIR/creating written). It
// reads DIR/format of a complete directory and fixes data_checksums from it.
func (db *DB) prepareDir() (creating bool, err error) {
	formatPath := path.Join(db.dir, formatFile)
	markerPath := path.Join(db.dir, creatingFile)
	b, err := vfs.ReadFile(db.fs, formatPath)
	switch {
	case err == nil:
		if err := db.checkFormat(formatPath, b); err != nil {
			return false, err
		}
		// A creation that finished but lost its marker's removal.
		if err := db.fs.Remove(markerPath); err != nil && !vfs.IsNotExist(err) {
			return false, fmt.Errorf("kv: remove %s: %w", markerPath, err)
		}
		return false, nil
	case !vfs.IsNotExist(err):
		return false, fmt.Errorf("kv: read %s: %w", formatPath, err)
	}
	_, err = db.fs.Stat(markerPath)
	switch {
	case err == nil:
		// Our own creation, interrupted: everything here is ours to clear.
		return true, db.clearInterruptedCreation()
	case !vfs.IsNotExist(err):
		return false, fmt.Errorf("kv: stat %s: %w", markerPath, err)
	}
	found, err := db.engineFiles()
	if err != nil {
		return false, err
	}
	if len(found) > 0 {
		return false, base.CorruptionErrorf("kv: %s holds %s but no %s file: the directory is damaged or incomplete "+
			"(restore %s from a backup or copy of it); nothing was changed",
			db.dir, strings.Join(found, ", "), formatFile, formatPath)
	}
	if err := vfs.WriteFileAtomic(db.fs, markerPath, []byte("heapkv creation in progress\n")); err != nil {
		return false, fmt.Errorf("kv: create %s: %w", db.dir, err)
	}
	return true, nil
}

// engineFiles lists the entries of DIR that hold engine data: the control
// file, and wal/, clog/ or base/ when they have files in them.
func (db *DB) engineFiles() ([]string, error) {
	var found []string
	for _, name := range engineEntries {
		p := path.Join(db.dir, name)
		if name == "control" {
			if _, err := db.fs.Stat(p); err == nil {
				found = append(found, p)
			} else if !vfs.IsNotExist(err) {
				return nil, fmt.Errorf("kv: stat %s: %w", p, err)
			}
			continue
		}
		names, err := db.fs.List(p)
		if vfs.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kv: list %s: %w", p, err)
		}
		if len(names) > 0 {
			found = append(found, fmt.Sprintf("%s/ (%d files)", p, len(names)))
		}
	}
	return found, nil
}

// clearInterruptedCreation removes what a creation that crashed may have
// left: the control file and the WAL, CLOG and relation files. Only called
// when DIR/creating proves the files are ours; it touches nothing else.
func (db *DB) clearInterruptedCreation() error {
	for _, sub := range []string{"wal", "clog", "base"} {
		d := path.Join(db.dir, sub)
		names, err := db.fs.List(d)
		if vfs.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := db.fs.Remove(path.Join(d, n)); err != nil {
				return fmt.Errorf("kv: clear interrupted creation: %w", err)
			}
		}
		if err := db.fs.SyncDir(d); err != nil {
			return err
		}
	}
	if err := db.fs.Remove(path.Join(db.dir, "control")); err != nil && !vfs.IsNotExist(err) {
		return err
	}
	return db.fs.SyncDir(db.dir)
}

// finishCreate makes the new directory durable and marks it complete:
// format first, then the marker goes.
func (db *DB) finishCreate() error {
	if err := db.wal.Checkpoint(); err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(db.fs, path.Join(db.dir, formatFile), encodeFormat(formatVersion, db.cfg.DataChecksums)); err != nil {
		return err
	}
	if err := db.fs.Remove(path.Join(db.dir, creatingFile)); err != nil {
		return err
	}
	return db.fs.SyncDir(db.dir)
}

// The format file:
//
//	heapkv <version>\n
//	data_checksums on|off\n
func encodeFormat(version int, checksums Toggle) []byte {
	return fmt.Appendf(nil, "heapkv %d\ndata_checksums %s\n", version, checksums)
}

// parseFormat decodes the format file. It accepts exactly what
// encodeFormat writes.
func parseFormat(b []byte) (version int, checksums Toggle, err error) {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) != 3 || len(lines[2]) != 0 {
		return 0, 0, fmt.Errorf("want 2 lines, got %q", truncKey(b))
	}
	v, ok := bytes.CutPrefix(lines[0], []byte("heapkv "))
	if !ok {
		return 0, 0, fmt.Errorf("first line %q is not \"heapkv <version>\"", truncKey(lines[0]))
	}
	version, err = strconv.Atoi(string(v))
	if err != nil || version <= 0 {
		return 0, 0, fmt.Errorf("bad version %q", truncKey(v))
	}
	switch string(lines[1]) {
	case "data_checksums on":
		checksums = Enabled
	case "data_checksums off":
		checksums = Disabled
	default:
		return 0, 0, fmt.Errorf("second line %q is not \"data_checksums on|off\"", truncKey(lines[1]))
	}
	return version, checksums, nil
}

// checkFormat checks DIR/format's contents against this build and the
// settings; data_checksums is fixed at creation.
func (db *DB) checkFormat(p string, b []byte) error {
	version, checksums, err := parseFormat(b)
	if err != nil {
		return fmt.Errorf("%w: %s: unreadable format file: %v", ErrIncompatible, p, err)
	}
	if version != formatVersion {
		return fmt.Errorf("%w: %s is format %d, this build reads format %d", ErrIncompatible, db.dir, version, formatVersion)
	}
	if db.cfg.source["data_checksums"] != "default" && db.cfg.DataChecksums != checksums {
		return fmt.Errorf("%w: data_checksums is %s for %s and is fixed at creation", ErrBadSetting, checksums, db.dir)
	}
	db.cfg.DataChecksums = checksums
	return nil
}
