// Package cluster runs the real Temporal server of the production
// topology on this machine's PostgreSQL, from deploy/temporal/
// metalpower.yaml (the file docker-compose.yml mounts too): the SQL tool
// creates or upgrades the schema, then one server process runs the four
// services. Tests, benchmarks and `make cluster` start it from here.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/metalpower/metalpower/internal/temporalconn"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/workflows"
)

// Options shape a cluster.
type Options struct {
	// DB names the server's databases: DB and DB_visibility, created
	// when missing on the PostgreSQL at DBAddress (127.0.0.1:5432) as
	// DBUser (postgres; the machine's cluster trusts local connections).
	DB, DBAddress, DBUser string
	// FrontendPort is the gRPC port clients use (0: a free one). The
	// other services take free ports below 32768.
	FrontendPort int
}

func (o Options) withDefaults() Options {
	if o.DB == "" {
		o.DB = "temporal"
	}
	if o.DBAddress == "" {
		o.DBAddress = "127.0.0.1:5432"
	}
	if o.DBUser == "" {
		o.DBUser = "postgres"
	}
	return o
}

// Cluster is a running Temporal server.
type Cluster struct {
	Address string
	opts    Options
	env     []string
	cmd     *exec.Cmd
	out     *devserver.SyncBuffer
}

// Binaries are the server and its SQL tool, built by `make cluster-tools`.
func Binaries() (server, sqlTool string, err error) {
	root, err := devserver.RepoRoot()
	if err != nil {
		return "", "", err
	}
	server, sqlTool = filepath.Join(root, "tools", "bin", "temporal-server"), filepath.Join(root, "tools", "bin", "temporal-sql-tool")
	for _, p := range []string{server, sqlTool} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%s is missing: run `make cluster-tools` (it builds the Temporal server from tools/)", p)
		}
	}
	return server, sqlTool, nil
}

// Tctl is tctl v1.18.0, built by `make cluster-tools`.
func Tctl() (string, error) {
	root, err := devserver.RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "tools", "bin", "tctl")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing: run `make cluster-tools` (it builds tctl from tools/tctl)", p)
	}
	return p, nil
}

// DropDatabases removes the server's two databases (a test's own).
func DropDatabases(ctx context.Context, opts Options) error {
	opts = opts.withDefaults()
	for _, db := range []string{opts.DB, opts.DB + "_visibility"} {
		if err := runSQLTool(ctx, opts, db, "drop-database", "--force"); err != nil {
			return err
		}
	}
	return nil
}

// runSQLTool runs temporal-sql-tool on database db.
func runSQLTool(ctx context.Context, opts Options, db string, args ...string) error {
	_, sqlTool, err := Binaries()
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(opts.DBAddress)
	if err != nil {
		return fmt.Errorf("database address %q: %w", opts.DBAddress, err)
	}
	all := append([]string{"--plugin", "postgres12", "--ep", host, "-p", port, "-u", opts.DBUser, "--db", db}, args...)
	if out, err := exec.CommandContext(ctx, sqlTool, all...).CombinedOutput(); err != nil {
		return fmt.Errorf("temporal-sql-tool %v on %s: %w\n%s", args, db, err, out)
	}
	return nil
}

// Start sets up the schema and runs the server until Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts = opts.withDefaults()
	if err := Schema(ctx, opts); err != nil {
		return nil, err
	}
	ports, err := freePorts(8, opts.FrontendPort)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Address: "127.0.0.1:" + strconv.Itoa(ports[0]), opts: opts, out: &devserver.SyncBuffer{}}
	c.env = append(os.Environ(),
		"TEMPORAL_DB="+opts.DB, "TEMPORAL_VISIBILITY_DB="+opts.DB+"_visibility",
		"TEMPORAL_DB_ADDRESS="+opts.DBAddress, "TEMPORAL_DB_USER="+opts.DBUser,
		"TEMPORAL_FRONTEND_PORT="+strconv.Itoa(ports[0]), "TEMPORAL_FRONTEND_MEMBERSHIP_PORT="+strconv.Itoa(ports[1]),
		"TEMPORAL_FRONTEND_HTTP_PORT="+strconv.Itoa(ports[2]),
		"TEMPORAL_HISTORY_PORT="+strconv.Itoa(ports[3]), "TEMPORAL_HISTORY_MEMBERSHIP_PORT="+strconv.Itoa(ports[4]),
		"TEMPORAL_MATCHING_PORT="+strconv.Itoa(ports[5]), "TEMPORAL_MATCHING_MEMBERSHIP_PORT="+strconv.Itoa(ports[6]),
		"TEMPORAL_WORKER_PORT="+strconv.Itoa(ports[7]), "TEMPORAL_WORKER_MEMBERSHIP_PORT="+strconv.Itoa(ports[7]+1))
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	if err := c.ensureNamespace(ctx, "default"); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// EnsureSearchAttributes creates metalpower's search attributes in the
// default namespace and waits until the server maps them, as the first
// worker would: an API process started before any worker can then start
// changes at once.
func (c *Cluster) EnsureSearchAttributes(ctx context.Context) error {
	cl, err := devserver.Dial(ctx, c.Address)
	if err != nil {
		return err
	}
	defer cl.Close()
	return temporalconn.EnsureSearchAttributes(ctx, cl, "default", workflows.SearchAttributes...)
}

// Schema creates the server's two databases when missing and brings
// their schema to the version the SQL tool carries: a new database gets
// it from scratch, an older one is upgraded, a current one is left as is.
func Schema(ctx context.Context, opts Options) error {
	opts = opts.withDefaults()
	for _, db := range []struct{ name, schema string }{
		{opts.DB, "postgresql/v12/temporal"}, {opts.DB + "_visibility", "postgresql/v12/visibility"},
	} {
		for _, step := range [][]string{
			{"--quiet", "create-database"},           // exists already: fine
			{"--quiet", "setup-schema", "-v", "0.0"}, // set up already: fine
			{"update-schema", "--schema-name", db.schema},
		} {
			if err := runSQLTool(ctx, opts, db.name, step...); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Cluster) start(ctx context.Context) error {
	server, _, err := Binaries()
	if err != nil {
		return err
	}
	root, err := devserver.RepoRoot()
	if err != nil {
		return err
	}
	c.cmd = exec.Command(server, "--root", root, "--config", "deploy/temporal", "--env", "metalpower", "--allow-no-auth", "start")
	c.cmd.Env = c.env
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start the Temporal server: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := devserver.WaitReady(wctx, c.Address, ""); err != nil {
		c.Stop()
		return fmt.Errorf("the Temporal server did not start on %s: %v\n%s", c.Address, err, c.out.String())
	}
	return nil
}

// ensureNamespace registers ns (one day of retention) unless it exists.
func (c *Cluster) ensureNamespace(ctx context.Context, ns string) error {
	cl, err := devserver.Dial(ctx, c.Address)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("register namespace %s: %w", ns, err)
	}
	// A new namespace reaches every frontend cache within a few seconds.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := cl.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Restart stops the server (kill -9 when hard) and starts it again on the
// same ports and databases.
func (c *Cluster) Restart(ctx context.Context, hard bool) error {
	if hard {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	} else {
		c.Stop()
	}
	return c.start(ctx)
}

// Stop ends the server.
func (c *Cluster) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// Output is what the server logged.
func (c *Cluster) Output() string { return c.out.String() }

// freePorts finds n free TCP ports below 32768 (the server stores
// membership ports as SMALLINT), starting with want when it is set. Each
// leaves the next one free too (the worker's membership port).
func freePorts(n, want int) ([]int, error) {
	if want == 0 {
		return devserver.SpacedPorts(n)
	}
	ports, err := devserver.SpacedPorts(n-1, want)
	return append([]int{want}, ports...), err
}
