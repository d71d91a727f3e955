// Package keystone runs a real OpenStack Keystone for tests: Debian's
// `keystone` package (Zed), on a MariaDB database of the test's own, with
// fernet tokens, served by keystone-wsgi-public on a loopback port. It
// follows the recipe in ../shared/testbed/openstack.md; the test starts it
// and removes it (process, database, files) when it ends.
package keystone

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"

	"github.com/metalpower/metalpower/internal/testbed/devserver"
)

// MariaDB is the machine's database server: root without a password, as
// the test machines and CI run it. SQLite is no option: keystone's
// threaded WSGI server fails on it with "database is locked".
const mariaDBHost, mariaDBPort = "127.0.0.1", "3306"

// MariaDBAddr is the machine's MariaDB as host:port, for services'
// database URLs (mysql+pymysql://root@ADDR/DB).
const MariaDBAddr = mariaDBHost + ":" + mariaDBPort

// tools are the programs Start runs, all from Debian's packages.
var tools = []string{"keystone-manage", "keystone-wsgi-public", "openstack", "mariadb"}

// User is a Keystone user in the Default domain.
type User struct{ Name, Password string }

// Keystone is a running Keystone.
type Keystone struct {
	// URL is the identity endpoint, http://127.0.0.1:PORT/v3, as the
	// catalog's identity service lists it (region RegionOne).
	URL string
	// AdminPassword is the bootstrap user `admin`'s, with role admin in
	// project `admin`.
	AdminPassword string
	// ServiceProject is `service`, the project the service users are in.
	ServiceProject string
	// Metalpower and Nova are service users with role `service` in
	// ServiceProject (Nova has `admin` too, as its external events need).
	Metalpower, Nova User
	// Dir holds keystone.conf, the key repositories and keystone.log.
	Dir string

	// Timing says where Launch's time went.
	Timing string

	cmd  *exec.Cmd
	done chan struct{}
	conf string
	port int
	db   string
}

// Start runs a Keystone for t and removes it when t ends. It takes about
// 20 s. Missing packages fail the test (`make deps` installs them): a
// test that needs Keystone never skips.
func Start(t testing.TB) *Keystone {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k, err := Launch(ctx, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("keystone: %s: %s", k.URL, k.Timing)
	return k
}

// Launch runs a Keystone with its files in dir, on port (a free one when
// 0), until Close. It is Start for a person's stack (`starter demo
// -keystone`).
func Launch(ctx context.Context, dir string, port int) (_ *Keystone, err error) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("keystone: %s is missing; `make deps` installs it (apt-get install keystone python3-openstackclient; mariadb is the client of the machine's MariaDB): %w", tool, err)
		}
	}
	k := &Keystone{AdminPassword: Random(), ServiceProject: "service", Dir: dir,
		Metalpower: User{"metalpower", Random()}, Nova: User{"nova", Random()}}

	// A database of this Keystone's own, so tests in parallel (and a run
	// that died before its clean-up) never share one.
	k.db = "ks_" + Random()[:12]
	if out, err := MariaDB(ctx, "CREATE DATABASE "+k.db); err != nil {
		return nil, fmt.Errorf("keystone: create database %s in MariaDB at %s:%s: %v\n%s", k.db, mariaDBHost, mariaDBPort, err, out)
	}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()

	if port == 0 {
		if port, err = devserver.FreePort(); err != nil {
			return nil, err
		}
	}
	k.URL = "http://127.0.0.1:" + strconv.Itoa(port) + "/v3"
	conf := filepath.Join(k.Dir, "keystone.conf")
	if err := k.writeConfig(conf, k.db); err != nil {
		return nil, err
	}

	// keystone-manage runs as root here, so the key repositories belong
	// to root: the user keystone-wsgi-public runs as below.
	owner := []string{"--keystone-user", "root", "--keystone-group", "root"}
	steps := [][]string{
		{"db_sync"},
		append([]string{"fernet_setup"}, owner...),
		append([]string{"credential_setup"}, owner...),
		{"bootstrap", "--bootstrap-password", k.AdminPassword,
			"--bootstrap-admin-url", k.URL, "--bootstrap-public-url", k.URL, "--bootstrap-internal-url", k.URL,
			"--bootstrap-region-id", "RegionOne"},
	}
	began := time.Now()
	for _, step := range steps {
		// On exit keystone-manage may print a harmless traceback (an
		// AttributeError on "getcurrent"); only its exit status counts.
		cmd := exec.CommandContext(ctx, "keystone-manage", append([]string{"--config-file", conf}, step...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("keystone: keystone-manage %s: %v\n%s\n%s", step[0], err, out, k.log())
		}
	}
	manage := time.Since(began)
	k.conf, k.port = conf, port
	if err := k.serve(ctx, conf, port); err != nil {
		return nil, err
	}
	serve := time.Since(began) - manage

	// What a cloud has besides the bootstrap admin: the service project
	// and role, and the service users in it. One openstack process reads
	// them all from stdin (a process per command takes 2 s each, most of
	// this set-up); as it exits 0 whatever failed, the role assignments
	// are checked after.
	script := fmt.Sprintf("project create --domain default %s\nrole create service\n", k.ServiceProject)
	want := []string{"admin " + k.Nova.Name}
	for _, u := range []User{k.Metalpower, k.Nova} {
		script += fmt.Sprintf("user create --domain default --password %s %s\nrole add --project %s --user %s service\n",
			u.Password, u.Name, k.ServiceProject, u.Name)
		want = append(want, "service "+u.Name)
	}
	script += fmt.Sprintf("role add --project %s --user %s admin\n", k.ServiceProject, k.Nova.Name)
	// The bootstrap admin administers the system too, as a cloud's
	// operators do with system-scoped tokens.
	script += "role add --system all --user admin admin\n"
	out, err := k.Script(ctx, script)
	if err != nil {
		return nil, err
	}
	// Lines "ROLE USER@Default": the project's assignments.
	got, err := k.OpenStack(ctx, "role", "assignment", "list", "--names", "--project", k.ServiceProject,
		"-f", "value", "-c", "Role", "-c", "User")
	if err != nil {
		return nil, err
	}
	for _, w := range want {
		if !slices.Contains(strings.Split(got, "\n"), w+"@Default") {
			return nil, fmt.Errorf("keystone: no role assignment %q in project %s:\n%s\nopenstack said:\n%s", w, k.ServiceProject, got, out)
		}
	}
	// Where the time went, for a Keystone that starts slowly.
	k.Timing = fmt.Sprintf("keystone-manage %s, serving %s, service users %s",
		manage.Round(time.Millisecond), serve.Round(time.Millisecond), (time.Since(began) - manage - serve).Round(time.Millisecond))
	return k, nil
}

// Close stops Keystone and drops its database.
func (k *Keystone) Close() error {
	k.Stop()
	if out, err := MariaDB(context.Background(), "DROP DATABASE IF EXISTS "+k.db); err != nil {
		return fmt.Errorf("keystone: drop database %s: %v\n%s", k.db, err, out)
	}
	return nil
}

// writeConfig writes keystone.conf for database db.
func (k *Keystone) writeConfig(path, db string) error {
	fernet, credential := filepath.Join(k.Dir, "fernet-keys"), filepath.Join(k.Dir, "credential-keys")
	for _, d := range []string{fernet, credential} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("keystone: %w", err)
		}
	}
	conf := fmt.Sprintf(`[DEFAULT]
log_file = %s
[database]
connection = mysql+pymysql://root@%s:%s/%s
[token]
provider = fernet
[fernet_tokens]
key_repository = %s
[credential]
key_repository = %s
`, filepath.Join(k.Dir, "keystone.log"), mariaDBHost, mariaDBPort, db, fernet, credential)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("keystone: %w", err)
	}
	return nil
}

// serve starts keystone-wsgi-public on port and waits until GET /v3
// answers 200.
func (k *Keystone) serve(ctx context.Context, conf string, port int) error {
	out, err := os.Create(filepath.Join(k.Dir, "wsgi.out"))
	if err != nil {
		return fmt.Errorf("keystone: %w", err)
	}
	// Not CommandContext: the server outlives Start's context and stops
	// with the test (Stop).
	k.cmd = exec.Command("keystone-wsgi-public", "--host", "127.0.0.1", "--port", strconv.Itoa(port))
	k.cmd.Env = append(os.Environ(), "OS_KEYSTONE_CONFIG_FILES="+conf)
	k.cmd.Stdout, k.cmd.Stderr = out, out
	if err := k.cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("keystone: start keystone-wsgi-public: %w", err)
	}
	k.done = make(chan struct{})
	go func() { k.cmd.Wait(); out.Close(); close(k.done) }()

	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, k.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", k.URL, resp.Status)
		}
		select {
		case <-k.done:
			return fmt.Errorf("keystone: keystone-wsgi-public exited: %v\n%s", k.cmd.ProcessState, k.log())
		case <-ctx.Done():
			k.Stop()
			return fmt.Errorf("keystone: not answering on %s: %v\n%s", k.URL, err, k.log())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop kills keystone-wsgi-public and waits for it; the test's clean-up
// calls it, and a test may call it earlier to take Keystone away.
func (k *Keystone) Stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	k.cmd.Process.Kill()
	<-k.done
}

// Restart serves Keystone again after Stop, on the same port and
// database.
func (k *Keystone) Restart(ctx context.Context) error {
	return k.serve(ctx, k.conf, k.port)
}

// Script runs openstack commands, one per line, as admin in one process
// (a process per command costs about 2 s). openstack exits 0 whatever
// failed, so callers check what they made.
func (k *Keystone) Script(ctx context.Context, script string) (string, error) {
	cmd := exec.CommandContext(ctx, "openstack")
	cmd.Env, cmd.Stdin = k.AdminEnv(), strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("keystone: openstack (script %q): %v\n%s", script, err, out)
	}
	return string(out), nil
}

// Token logs u in and returns a token scoped to project (by name), or to
// the system when project is "".
func (k *Keystone) Token(ctx context.Context, u User, project string) (string, error) {
	scope := &gophercloud.AuthScope{System: true}
	if project != "" {
		scope = &gophercloud.AuthScope{ProjectName: project, DomainName: "Default"}
	}
	p, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: k.URL,
		Username: u.Name, Password: u.Password, DomainName: "Default", Scope: scope})
	if err != nil {
		return "", fmt.Errorf("keystone: token for %s (project %q): %w", u.Name, project, err)
	}
	return p.Token(), nil
}

// AdminEnv is the environment of the openstack CLI as `admin` in project
// `admin` (OS_* variables; the caller's own OS_* are dropped).
func (k *Keystone) AdminEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") {
			env = append(env, kv)
		}
	}
	return append(env, "OS_AUTH_URL="+k.URL, "OS_USERNAME=admin", "OS_PASSWORD="+k.AdminPassword,
		"OS_PROJECT_NAME=admin", "OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default",
		"OS_IDENTITY_API_VERSION=3")
}

// OpenStack runs the openstack CLI as admin and returns its output.
func (k *Keystone) OpenStack(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "openstack", args...)
	cmd.Env = k.AdminEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("keystone: openstack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// log is the tail of keystone.log and of the server's output, for
// failure messages.
func (k *Keystone) log() string {
	var b strings.Builder
	for _, name := range []string{"keystone.log", "wsgi.out"} {
		data, _ := os.ReadFile(filepath.Join(k.Dir, name))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s:\n%s\n", name, data)
	}
	return b.String()
}

// MariaDB runs one SQL statement as root on the machine's MariaDB.
func MariaDB(ctx context.Context, sql string) ([]byte, error) {
	return exec.CommandContext(ctx, "mariadb", "-h", mariaDBHost, "-P", mariaDBPort, "-u", "root", "-e", sql).CombinedOutput()
}

// Random is 32 hex digits from crypto/rand, for passwords and names.
func Random() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
