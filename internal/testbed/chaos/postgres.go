// Package chaos runs metalpower under load while its parts fail: the
// worker process is killed, the Temporal dev server, PostgreSQL, BMCs and
// Nova go down and come back. chaos_test.go drives it; this package holds
// the process helpers it needs.
package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/metalpower/metalpower/internal/testbed/devserver"
)

// Postgres is a private PostgreSQL cluster in a temporary directory, on a
// port of its own, so that restarting it disturbs nothing else on the
// machine (the shared cluster on 5432 serves other test packages).
type Postgres struct {
	Port int
	dir  string // owned by the postgres user: data/, sock/, log
	bin  string // /usr/lib/postgresql/<version>/bin
	// run prefixes commands that must run as the postgres user.
	run []string
}

// PostgresBinDir finds the server binaries (initdb, pg_ctl) of the newest
// installed PostgreSQL.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var ok []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			ok = append(ok, d)
		}
	}
	if len(ok) == 0 {
		return "", fmt.Errorf("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: install Debian's postgresql package (`make deps` does)")
	}
	sort.Slice(ok, func(i, j int) bool { return version(ok[i]) < version(ok[j]) })
	return ok[len(ok)-1], nil
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// StartPostgres creates a cluster (initdb, trust authentication for local
// connections) and starts it on a free port. initdb refuses to run as
// root, so as root the cluster belongs to the postgres user.
func StartPostgres() (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	port, err := devserver.FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "metalpower-chaos-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{Port: port, dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user to own the private cluster: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs runuser (util-linux) to run initdb as postgres: %w", err)
		}
		p.run = []string{runuser, "-u", "postgres", "--"}
	}
	if err := p.command("mkdir", "-p", p.sock()).Run(); err != nil {
		p.remove()
		return nil, fmt.Errorf("make the socket directory: %w", err)
	}
	if out, err := p.command(filepath.Join(bin, "initdb"), "-D", p.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		p.remove()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := p.Start(); err != nil {
		p.remove()
		return nil, err
	}
	return p, nil
}

// URL is the node store URL of the cluster's postgres database.
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

func (p *Postgres) data() string { return filepath.Join(p.dir, "data") }
func (p *Postgres) sock() string { return filepath.Join(p.dir, "sock") }

func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	argv := append(append([]string{}, p.run...), append([]string{name}, args...)...)
	return exec.Command(argv[0], argv[1:]...)
}

// Start starts the server and waits until it accepts connections.
func (p *Postgres) Start() error {
	opts := strings.Join([]string{"-p", strconv.Itoa(p.Port), "-k", p.sock(), "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "max_connections=200"}, " ")
	out, err := p.command(filepath.Join(p.bin, "pg_ctl"), "-D", p.data(), "-l", filepath.Join(p.dir, "log"),
		"-o", opts, "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, lastLines(string(log), 20))
	}
	return nil
}

// Stop stops the server; immediate is a crash-like stop (no shutdown
// checkpoint, the next start replays the WAL).
func (p *Postgres) Stop(immediate bool) error {
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	out, err := p.command(filepath.Join(p.bin, "pg_ctl"), "-D", p.data(), "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
	return nil
}

// Restart crashes the server (stop -m immediate), waits down, and starts it
// again.
func (p *Postgres) Restart(down time.Duration) error {
	if err := p.Stop(true); err != nil {
		return err
	}
	time.Sleep(down)
	return p.Start()
}

// Close stops the server and removes the cluster.
func (p *Postgres) Close() {
	p.Stop(true)
	p.remove()
}

func (p *Postgres) remove() { os.RemoveAll(p.dir) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
