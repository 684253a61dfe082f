package drivers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/heapkv/heapkv/bench/ycsb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres runs a real PostgreSQL server, private to the run: initdb and
// pg_ctl on cfg.Dir/pgdata (as the "postgres" user when the runner is
// root, since PostgreSQL refuses to run as root; an existing cluster
// there, e.g. a copy of a loaded one, is started as it is), no TCP, a
// Unix socket in a short temporary directory, one table usertable(key text primary key, value bytea)
// in the C collation so key order is byte order as in the other engines.
// synchronous_commit on/off gives durable/relaxed (fsync stays on);
// shared_buffers is the cache budget. Without initdb/pg_ctl on PATH or in
// /usr/lib/postgresql/*/bin, Open returns ycsb.ErrUnavailable.
func Postgres() ycsb.Driver {
	return ycsb.Driver{Name: "postgres", CacheNote: "shared_buffers", Open: openPostgres}
}

type pgDB struct {
	bin     string // directory of initdb and pg_ctl
	base    string // temporary directory holding the socket and the server log
	data    string // cfg.Dir/pgdata
	sock    string
	cred    *syscall.Credential // nil unless we run the server as postgres
	threads int
	pool    *pgxpool.Pool
}

// pgBinDir finds the directory holding initdb and pg_ctl.
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Highest version first (lexical order is fine up to version 99).
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "initdb")) && fileExists(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: postgres: initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin", ycsb.ErrUnavailable)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// PostgresAvailable reports whether a server can be started here, and why
// not.
func PostgresAvailable() error {
	if _, err := pgBinDir(); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return fmt.Errorf("%w: postgres: running as root and no postgres user to run the server as", ycsb.ErrUnavailable)
		}
	}
	return nil
}

func openPostgres(cfg ycsb.Config) (_ ycsb.DB, err error) {
	if err := PostgresAvailable(); err != nil {
		return nil, err
	}
	bin, _ := pgBinDir()
	p := &pgDB{bin: bin, threads: max(cfg.Threads, 1)}
	if p.base, err = os.MkdirTemp("", "ycsbpg"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	p.data = filepath.Join(cfg.Dir, "pgdata")
	p.sock = filepath.Join(p.base, "s")
	if err := os.Mkdir(p.sock, 0o700); err != nil {
		return nil, err
	}
	exists := fileExists(filepath.Join(p.data, "PG_VERSION"))
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, dir := range []string{p.base, cfg.Dir} {
			if err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Chown(path, uid, gid)
			}); err != nil {
				return nil, err
			}
		}
	}
	if !exists {
		if err := p.run("initdb", "-D", p.data, "-U", "bench", "-A", "trust", "--locale=C", "-E", "UTF8", "--no-sync"); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -c port=5432 -c max_connections=%d -c shared_buffers=%dkB -c fsync=on",
		p.sock, p.threads+20, max(cfg.CacheBytes, 16<<20)>>10)
	if err := p.run("pg_ctl", "-D", p.data, "-l", filepath.Join(p.base, "log"), "-w", "-o", opts, "start"); err != nil {
		return nil, err
	}
	if err := p.SetDurability(cfg.Durability); err != nil {
		return nil, err
	}
	_, err = p.pool.Exec(context.Background(),
		`CREATE TABLE IF NOT EXISTS usertable (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL)`)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pgDB) run(prog string, args ...string) error {
	cmd := exec.Command(filepath.Join(p.bin, prog), args...)
	cmd.Dir = p.base
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(p.base, "log"))
		return fmt.Errorf("postgres: %s: %w\n%s\n%s", prog, err, out, log)
	}
	return nil
}

// SetDurability reconnects with synchronous_commit set for the mode, so
// the runner can load relaxed and run durable without a restart.
func (p *pgDB) SetDurability(d ycsb.Durability) error {
	if p.pool != nil {
		p.pool.Close()
		p.pool = nil
	}
	sc := "on"
	if d == ycsb.Relaxed {
		sc = "off"
	}
	pc, err := pgxpool.ParseConfig(fmt.Sprintf("host=%s port=5432 user=bench dbname=postgres pool_max_conns=%d", p.sock, p.threads+2))
	if err != nil {
		return err
	}
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = sc
	p.pool, err = pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return err
	}
	return p.pool.Ping(context.Background())
}

var errPgNotFound = errors.New("postgres: key not found")

func (p *pgDB) Read(key []byte) (v []byte, err error) {
	err = p.pool.QueryRow(context.Background(), `SELECT value FROM usertable WHERE key = $1`, string(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		err = errPgNotFound
	}
	return v, err
}

func (p *pgDB) rmw(key []byte, modify func([]byte) []byte) (old []byte, err error) {
	ctx := context.Background()
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT value FROM usertable WHERE key = $1 FOR UPDATE`, string(key)).Scan(&old); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return errPgNotFound
			}
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE usertable SET value = $2 WHERE key = $1`, string(key), modify(old))
		return err
	})
	return old, err
}

func (p *pgDB) Update(key []byte, modify func([]byte) []byte) error {
	_, err := p.rmw(key, modify)
	return err
}

func (p *pgDB) ReadModifyWrite(key []byte, modify func([]byte) []byte) ([]byte, error) {
	return p.rmw(key, modify)
}

func (p *pgDB) Insert(key, value []byte) error {
	_, err := p.pool.Exec(context.Background(), `INSERT INTO usertable (key, value) VALUES ($1, $2)`, string(key), value)
	return err
}

func (p *pgDB) Scan(start []byte, count int) (int, error) {
	rows, err := p.pool.Query(context.Background(),
		`SELECT key, value FROM usertable WHERE key >= $1 ORDER BY key LIMIT $2`, string(start), count)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// Close stops the server and removes its socket and log; the cluster
// stays in cfg.Dir.
func (p *pgDB) Close() error {
	if p.pool != nil {
		p.pool.Close()
	}
	var err error
	if fileExists(filepath.Join(p.data, "postmaster.pid")) {
		err = p.run("pg_ctl", "-D", p.data, "-m", "fast", "-w", "stop")
	}
	return errors.Join(err, os.RemoveAll(p.base))
}
