// Package pgtest gives tests a real PostgreSQL: the one at POSTGRES_URL, else
// the one answering on 127.0.0.1:5432 (database "test", trust auth), and, for
// tests that must restart their database, a server of their own started from
// the installed binaries (initdb + pg_ctl on a temporary directory and a free
// loopback port).
//
// Tests never skip for lack of PostgreSQL: they fail with a message that says
// how to get one. `scripts/with-postgres.sh go test ./...` (what `make test`
// runs) finds or starts one and exports POSTGRES_URL.
//
// All functions are safe for concurrent use by parallel tests.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// EnvURL names the variable holding the PostgreSQL URL.
const EnvURL = "POSTGRES_URL"

// DefaultURL is tried when POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// EnvBinDir names the variable holding the directory of initdb and pg_ctl
// (default: the newest /usr/lib/postgresql/*/bin, else $PATH).
const EnvBinDir = "PG_BINDIR"

const howTo = "set POSTGRES_URL, start PostgreSQL on 127.0.0.1:5432 with a database \"test\", " +
	"or run the tests under scripts/with-postgres.sh (it starts one from the installed binaries; apt-get install postgresql)"

// URL returns $POSTGRES_URL, or DefaultURL when unset.
func URL() string {
	if u := strings.TrimSpace(os.Getenv(EnvURL)); u != "" {
		return u
	}
	return DefaultURL
}

// Open opens url with the pgx driver and pings it (5 s).
func Open(ctx context.Context, url string) (*sql.DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// DB returns a pool on URL(), closed in t.Cleanup. It fails the test, saying
// how to get a PostgreSQL, when none answers.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := Open(context.Background(), URL())
	if err != nil {
		t.Fatalf("pgtest: no PostgreSQL at %s: %v\n%s", redact(URL()), err, howTo)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Name returns a fresh SQL identifier "<prefix>_<8 hex>" for a table of one
// test, and drops the table (if created) in t.Cleanup on db.
func Name(t testing.TB, db *sql.DB, prefix string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = db.ExecContext(ctx, `DROP TABLE IF EXISTS "`+name+`"`)
	})
	return name
}

func redact(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.Index(u[i+3:], "@"); j >= 0 {
			cred := u[i+3 : i+3+j]
			if k := strings.Index(cred, ":"); k >= 0 {
				return u[:i+3] + cred[:k] + ":***" + u[i+3+j:]
			}
		}
	}
	return u
}

// Server is a PostgreSQL server of one test, on its own data directory and
// port. The test may stop and restart it at will.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	port    int
	asUser  string // run the binaries as this user ("" = as ourselves)
	logFile string
}

// StartServer starts a PostgreSQL server for t from the installed binaries
// and stops it in t.Cleanup. It fails the test if the binaries are missing.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		t.Fatalf("pgtest: %v; %s", err, howTo)
	}
	s := &Server{t: t, bin: bin}
	if os.Geteuid() == 0 { // initdb refuses to run as root
		if _, err := user.Lookup("postgres"); err != nil {
			t.Fatalf("pgtest: running as root and there is no user \"postgres\" to run initdb as: %v", err)
		}
		s.asUser = "postgres"
	}
	s.dir, err = os.MkdirTemp("", "pgtest-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(s.dir) })
	if s.asUser != "" {
		u, _ := user.Lookup(s.asUser)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	s.logFile = filepath.Join(s.dir, "server.log")
	data := filepath.Join(s.dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	s.port, err = freePort()
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { _, _ = s.run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop") })
	return s
}

// URL is the server's URL (database "postgres").
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Start starts the (stopped) server and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off", s.port, s.dir)
	if out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-l", s.logFile, "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(s.logFile)
		s.t.Fatalf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
}

// Stop stops the server at once ("immediate" mode: what a crash looks like
// to clients; the server recovers from its WAL on the next start).
func (s *Server) Stop() {
	s.t.Helper()
	if out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		s.t.Fatalf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
}

func (s *Server) run(tool string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, tool)
	var cmd *exec.Cmd
	if s.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

func binDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err == nil && v > bestV {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				best, bestV = d, v
			}
		}
	}
	if best != "" {
		return best, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("initdb not found (in $%s, /usr/lib/postgresql/*/bin or $PATH)", EnvBinDir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
