// Package openstack runs a real OpenStack for tests and for a person to
// try: Debian's Placement, Neutron, Glance and Nova (nova-api,
// nova-conductor and nova-compute with the ironic driver), Zed, each on a
// MariaDB database of its own and all on a RabbitMQ vhost of their own,
// behind a Keystone of internal/testbed/keystone. metalpower is the
// cloud's baremetal service: the caller registers its API in the catalog
// (RegisterBaremetal) and nova-compute drives it as it would Ironic.
//
// It follows the recipe in ../shared/testbed/openstack.md. Neutron and
// Glance are there because Nova's API needs them to show a server, not to
// deploy one: instances are made with Nova's own objects (CreateInstance).
package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/internal/testbed/keystone"
)

// Packages are Debian's packages the cloud runs, as `make deps` installs
// them (with --no-install-recommends).
const Packages = "placement-api nova-api nova-conductor nova-compute-ironic neutron-server glance-api"

// tools are the programs Launch runs.
var tools = []string{"placement-api", "placement-manage", "neutron-server", "neutron-db-manage", "glance-api",
	"glance-manage", "nova-api-wsgi", "nova-conductor", "nova-compute", "nova-manage", "rabbitmqctl", "mariadb", "openstack"}

// Options shape the cloud.
type Options struct {
	// BaremetalURL is metalpower's API, listed as the catalog's baremetal
	// service (public and internal) before nova-compute starts and looks
	// for it. Required.
	BaremetalURL string
	// SyncPowerStateInterval is nova-compute's sync_power_state_interval
	// in seconds (Nova's default 600); UpdateResourcesInterval its
	// update_resources_interval, which also refreshes the node cache its
	// power sync reads (Nova's default 0: every periodic run, 60 s).
	SyncPowerStateInterval, UpdateResourcesInterval int
	// ShutdownTimeout is Nova's shutdown_timeout: how long a server stop
	// waits for a soft power off before a hard one (Nova's default 60).
	ShutdownTimeout int
}

// Cloud is a running OpenStack.
type Cloud struct {
	K *keystone.Keystone
	// Dir holds the configuration files and every service's log.
	Dir string
	// Host is nova-compute's host name.
	Host string
	// ComputeURL, PlacementURL, NetworkURL and ImageURL are the services'
	// catalog endpoints.
	ComputeURL, PlacementURL, NetworkURL, ImageURL string
	// Placement, Neutron and Glance are their service users; Keystone's
	// Nova user (roles admin and service in project service) is Nova's.
	Placement, Neutron, Glance keystone.User
	// Ironic is the user nova-compute's [ironic] section logs in as:
	// role service in project service, as Ironic's docs tell a cloud to
	// make it (rbac_service_role_elevated_access on in metalpower).
	Ironic keystone.User
	// NovaConf is nova.conf (the API, the conductor, nova-manage).
	NovaConf string
	// Timing says where Launch's time went.
	Timing string

	id                      string
	adminProject, adminUser string
	vhost                   string
	dbs                     []string
	mu                      sync.Mutex
	procs                   map[string]*process
	ports                   map[string]int
	compute, placement      *gophercloud.ServiceClient
}

// Start launches a cloud for t behind k and removes it when t ends.
// Missing packages fail the test: `make deps` installs them.
func Start(t testing.TB, k *keystone.Keystone, opts Options) *Cloud {
	t.Helper()
	// Launch installs the packages first on a machine without them
	// (about 4 minutes), then starts the cloud (about 1).
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	c, err := Launch(ctx, k, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("openstack: %s", c.Timing)
	return c
}

// Launch starts the cloud with its files in dir, until Close.
func Launch(ctx context.Context, k *keystone.Keystone, dir string, opts Options) (_ *Cloud, err error) {
	if err := ensureInstalled(ctx); err != nil {
		return nil, err
	}
	if opts.BaremetalURL == "" {
		return nil, errors.New("openstack: no BaremetalURL: nova-compute needs metalpower's API in the catalog")
	}
	if opts.SyncPowerStateInterval == 0 {
		opts.SyncPowerStateInterval = 600
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 60
	}
	id := keystone.Random()[:10]
	c := &Cloud{K: k, Dir: dir, id: id, Host: "metal-compute-" + id[:4], vhost: "metalpower-" + id,
		Placement: keystone.User{Name: "placement", Password: keystone.Random()},
		Neutron:   keystone.User{Name: "neutron", Password: keystone.Random()},
		Glance:    keystone.User{Name: "glance", Password: keystone.Random()},
		Ironic:    keystone.User{Name: "nova-ironic", Password: keystone.Random()},
		procs:     map[string]*process{}, ports: map[string]int{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	began := time.Now()
	var timing []string
	lap := func(what string) {
		timing = append(timing, fmt.Sprintf("%s %s", what, time.Since(began).Round(100*time.Millisecond)))
	}

	for _, svc := range []string{"placement", "neutron", "glance", "nova_api", "nova", "nova_cell0"} {
		db := "os_" + id + "_" + svc
		if out, err := keystone.MariaDB(ctx, "CREATE DATABASE "+db); err != nil {
			return nil, fmt.Errorf("openstack: create database %s: %v\n%s", db, err, out)
		}
		c.dbs = append(c.dbs, db)
	}
	for _, args := range [][]string{{"add_vhost", c.vhost}, {"set_permissions", "-p", c.vhost, "guest", ".*", ".*", ".*"}} {
		if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("openstack: rabbitmqctl %s: %v\n%s (is RabbitMQ running on 127.0.0.1:5672?)", args[0], err, out)
		}
	}
	for _, svc := range []string{"placement", "neutron", "glance", "nova"} {
		if c.ports[svc], err = devserver.FreePort(); err != nil {
			return nil, err
		}
	}
	c.PlacementURL = c.url("placement", "")
	c.NetworkURL = c.url("neutron", "")
	c.ImageURL = c.url("glance", "")
	c.ComputeURL = c.url("nova", "/v2.1")
	if err := c.register(ctx, opts.BaremetalURL); err != nil {
		return nil, err
	}
	lap("databases, vhost, users and catalog")

	if err := c.writeConfigs(opts); err != nil {
		return nil, err
	}
	// The schemas, one service after another: they share two cores.
	for _, step := range [][]string{
		{"placement-manage", "--config-dir", c.path("placement"), "db", "sync"},
		{"neutron-db-manage", "--config-file", c.path("neutron.conf"), "upgrade", "heads"},
		{"glance-manage", "--config-file", c.path("glance-api.conf"), "db_sync"},
		{"nova-manage", "--config-file", c.NovaConf, "api_db", "sync"},
		{"nova-manage", "--config-file", c.NovaConf, "cell_v2", "map_cell0", "--database_connection", c.dbURL("nova_cell0")},
		{"nova-manage", "--config-file", c.NovaConf, "cell_v2", "create_cell", "--name", "cell1"},
		{"nova-manage", "--config-file", c.NovaConf, "db", "sync"},
	} {
		if out, err := exec.CommandContext(ctx, step[0], step[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("openstack: %s: %v\n%s", strings.Join(step, " "), err, tail(out, 4000))
		}
	}
	lap("schemas")

	if err := c.startServices(ctx); err != nil {
		return nil, err
	}
	lap("services")
	if err := c.makeFlavor(ctx); err != nil {
		return nil, err
	}
	c.Timing = strings.Join(timing, ", ")
	return c, nil
}

// ensureInstalled installs Packages when one of the programs Launch runs
// is missing, as `make deps` does: with apt-get, without recommended
// packages, and with a policy-rc.d that keeps their daemons from starting
// (the test bed starts them itself). A test on a fresh machine thus needs
// no step of its own.
func ensureInstalled(ctx context.Context) error {
	missing := ""
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = tool
			break
		}
	}
	if missing == "" {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("openstack: %s is missing and only root can install it: run `make deps` as root (apt-get install --no-install-recommends %s)", missing, Packages)
	}
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("openstack: %w", err)
		}
		defer os.Remove(policy)
	}
	debconf := exec.CommandContext(ctx, "debconf-set-selections")
	debconf.Stdin = strings.NewReader("dbconfig-common dbconfig-common/dbconfig-install boolean false\n")
	if out, err := debconf.CombinedOutput(); err != nil {
		return fmt.Errorf("openstack: debconf-set-selections: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"update", "-qq"},
		append([]string{"install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300"}, strings.Fields(Packages)...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("openstack: %s is missing; apt-get %s: %v\n%s", missing, args[0], err, tail(out, 4000))
		}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("openstack: %s is still missing after installing %s: %w", tool, Packages, err)
		}
	}
	return nil
}

// register makes the service users and the catalog entries, metalpower's
// API at baremetal among them.
func (c *Cloud) register(ctx context.Context, baremetal string) error {
	var script strings.Builder
	for _, u := range []keystone.User{c.Placement, c.Neutron, c.Glance} {
		fmt.Fprintf(&script, "user create --domain default --password %s %s\nrole add --project service --user %s admin\nrole add --project service --user %s service\n",
			u.Password, u.Name, u.Name, u.Name)
	}
	fmt.Fprintf(&script, "user create --domain default --password %s %s\nrole add --project service --user %s service\n",
		c.Ironic.Password, c.Ironic.Name, c.Ironic.Name)
	for _, s := range []struct{ name, kind, url string }{
		{"nova", "compute", c.ComputeURL}, {"placement", "placement", c.PlacementURL},
		{"neutron", "network", c.NetworkURL}, {"glance", "image", c.ImageURL},
		{"metalpower", "baremetal", baremetal},
	} {
		fmt.Fprintf(&script, "service create --name %s %s\n", s.name, s.kind)
		for _, iface := range []string{"public", "internal"} {
			fmt.Fprintf(&script, "endpoint create --region RegionOne %s %s %s\n", s.kind, iface, s.url)
		}
	}
	out, err := c.K.Script(ctx, script.String())
	if err != nil {
		return err
	}
	// openstack exits 0 whatever failed: check what it made.
	got, err := c.K.OpenStack(ctx, "endpoint", "list", "-f", "value", "-c", "Service Type")
	if err != nil {
		return err
	}
	for _, kind := range []string{"compute", "placement", "network", "image", "baremetal"} {
		if strings.Count(got, kind+"\n") < 2 {
			return fmt.Errorf("openstack: the catalog lacks the %s endpoints:\n%s\nopenstack said:\n%s", kind, got, out)
		}
	}
	return nil
}

// startServices starts every service and waits until each answers.
func (c *Cloud) startServices(ctx context.Context) error {
	// Placement first: nova-compute reports to it on start.
	if err := c.start(ctx, "placement", []string{"OS_PLACEMENT_CONFIG_DIR=" + c.path("placement")},
		"placement-api", "--host", "127.0.0.1", "--port", strconv.Itoa(c.ports["placement"])); err != nil {
		return err
	}
	if err := c.start(ctx, "neutron", nil, "neutron-server", "--config-file", c.path("neutron.conf")); err != nil {
		return err
	}
	if err := c.start(ctx, "glance", nil, "glance-api", "--config-file", c.path("glance-api.conf")); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "placement", "neutron", "glance"); err != nil {
		return err
	}
	// Neutron of Zed answers the first port list 500 until another query
	// has configured its database mappers.
	if out, err := c.K.OpenStack(ctx, "network", "list"); err != nil {
		return fmt.Errorf("openstack: warming Neutron up: %v\n%s\n%s", err, out, c.Log("neutron"))
	}
	if err := c.start(ctx, "nova-conductor", nil, "nova-conductor", "--config-file", c.NovaConf, "--log-file", c.LogFile("nova-conductor")); err != nil {
		return err
	}
	if err := c.StartNovaAPI(ctx); err != nil {
		return err
	}
	if err := c.start(ctx, "nova-compute", nil, "nova-compute", "--config-file", c.path("nova-compute.conf"), "--log-file", c.LogFile("nova-compute")); err != nil {
		return err
	}
	return c.waitComputeUp(ctx)
}

// StartNovaAPI starts nova-api (after StopNovaAPI, to take it away and
// bring it back) and waits until it answers.
func (c *Cloud) StartNovaAPI(ctx context.Context) error {
	if err := c.start(ctx, "nova-api", nil, "nova-api-wsgi", "--host", "127.0.0.1", "--port", strconv.Itoa(c.ports["nova"]),
		"--", "--config-file", c.NovaConf, "--log-file", c.LogFile("nova-api")); err != nil {
		return err
	}
	return c.waitHTTP(ctx, "nova")
}

// StopNovaAPI stops nova-api.
func (c *Cloud) StopNovaAPI() { c.stop("nova-api") }

// waitComputeUp waits until nova-compute reports up, then maps its host
// to cell1 (discover_hosts --by-service: with the ironic driver no compute
// node exists before nodes are listed, so the plain form maps nothing).
func (c *Cloud) waitComputeUp(ctx context.Context) error {
	for {
		out, err := c.K.OpenStack(ctx, "compute", "service", "list", "--service", "nova-compute", "-f", "value", "-c", "State")
		if err == nil && strings.TrimSpace(out) == "up" {
			break
		}
		if err := c.exited("nova-compute"); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("openstack: nova-compute not up: %v %s\n%s", err, out, c.Log("nova-compute"))
		case <-time.After(time.Second):
		}
	}
	return c.DiscoverHosts(ctx)
}

// DiscoverHosts maps nova-compute's host to cell1.
func (c *Cloud) DiscoverHosts(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "nova-manage", "--config-file", c.NovaConf, "cell_v2", "discover_hosts", "--by-service").CombinedOutput()
	if err != nil {
		return fmt.Errorf("openstack: nova-manage cell_v2 discover_hosts: %v\n%s", err, tail(out, 4000))
	}
	return nil
}

// Close stops every service, then drops the databases and the vhost
// (after the services: nova-compute on a deleted vhost logs hundreds of
// MB a minute).
func (c *Cloud) Close() error {
	c.mu.Lock()
	names := make([]string, 0, len(c.procs))
	for name := range c.procs {
		names = append(names, name)
	}
	c.mu.Unlock()
	for _, name := range names {
		c.stop(name)
	}
	var errs []error
	for _, db := range c.dbs {
		if out, err := keystone.MariaDB(context.Background(), "DROP DATABASE IF EXISTS "+db); err != nil {
			errs = append(errs, fmt.Errorf("openstack: drop database %s: %v\n%s", db, err, out))
		}
	}
	if c.vhost != "" {
		if out, err := exec.Command("rabbitmqctl", "delete_vhost", c.vhost).CombinedOutput(); err != nil && !strings.Contains(string(out), "does not exist") {
			errs = append(errs, fmt.Errorf("openstack: rabbitmqctl delete_vhost %s: %v\n%s", c.vhost, err, out))
		}
	}
	return errors.Join(errs...)
}

// process is a running service, in a process group of its own (glance
// and neutron fork workers; stopping the group stops them too).
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (c *Cloud) start(ctx context.Context, name string, env []string, prog string, args ...string) error {
	out, err := os.OpenFile(c.path(name+".out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("openstack: %w", err)
	}
	// Not CommandContext: the service outlives Launch's context.
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("openstack: start %s: %w", prog, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); out.Close(); close(p.done) }()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return nil
}

// stop ends a service's process group: SIGTERM, then SIGKILL after 10 s.
func (c *Cloud) stop(name string) {
	c.mu.Lock()
	p := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if p == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	// Workers the parent left behind go too.
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// exited is an error when service name's process has ended.
func (c *Cloud) exited(name string) error {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("openstack: %s is not running", name)
	}
	select {
	case <-p.done:
		return fmt.Errorf("openstack: %s exited: %v\n%s", name, p.cmd.ProcessState, c.Log(name))
	default:
		return nil
	}
}

// waitHTTP waits until each named service answers HTTP below 500.
func (c *Cloud) waitHTTP(ctx context.Context, names ...string) error {
	for _, name := range names {
		url := c.url(name, "/")
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode < 500 {
					break
				}
				err = fmt.Errorf("GET %s: %s", url, resp.Status)
			}
			proc := name
			if name == "nova" {
				proc = "nova-api"
			}
			if e := c.exited(proc); e != nil {
				return e
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("openstack: %s not answering: %v\n%s", name, err, c.Log(proc))
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// Log is the tail of a service's log files, for failure messages.
func (c *Cloud) Log(name string) string {
	var b strings.Builder
	for _, f := range []string{name + ".log", name + ".out"} {
		data, err := os.ReadFile(c.path(f))
		if err == nil {
			fmt.Fprintf(&b, "--- %s:\n%s\n", f, tail(data, 6000))
		}
	}
	return b.String()
}

// LogFile is the path of a service's log (nova-compute, nova-api, ...).
func (c *Cloud) LogFile(name string) string { return c.path(name + ".log") }

func (c *Cloud) path(name string) string { return filepath.Join(c.Dir, name) }

func (c *Cloud) url(svc, path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.ports[svc]) + path
}

func (c *Cloud) dbURL(db string) string {
	return "mysql+pymysql://root@" + keystone.MariaDBAddr + "/os_" + c.id + "_" + db
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
