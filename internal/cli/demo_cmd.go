package cli

import (
	"context"

	"github.com/metalpower/metalpower/internal/demo"
)

func init() {
	register("demo", "demo [-data DIR] [-temporal-cli PATH] [-redfish N] [-ipmi N] [-api-port P] [-temporal-port P] [-ui-port P]   run the whole local stack on simulated hardware (make demo)", runDemo)
	register("cluster", "cluster [demo's flags] [-segment N]   run the production topology on this machine: Temporal on PostgreSQL, its Web UI, 3 workers in 2 conductor groups, 2 APIs (make cluster)", runCluster)
}

func runCluster(ctx context.Context, env *Env, args []string) error {
	return runStack(ctx, env, "cluster", args)
}

func runDemo(ctx context.Context, env *Env, args []string) error {
	return runStack(ctx, env, "demo", args)
}

// runStack runs the demo, or with name "cluster" the production topology.
func runStack(ctx context.Context, env *Env, name string, args []string) error {
	o := demo.Options{Cluster: name == "cluster"}
	fs := flags(name, env)
	if o.Cluster {
		fs.IntVar(&o.Segment, "segment", 10, "simulated Redfish nodes of conductor group segment-b (seg-01..), on a Redfish service of their own")
		fs.StringVar(&o.SegmentAddr, "segment-addr", "127.0.0.1:8001", "where segment-b's Redfish service listens")
		fs.StringVar(&o.Databases, "databases", "metalpower", "PostgreSQL databases: NAME (the node store), NAME_temporal and NAME_temporal_visibility (the server's)")
	}
	fs.BoolVar(&o.Keystone, "keystone", false, "run a real Keystone (Debian's keystone on the local MariaDB; make deps installs it) and the API with auth_strategy keystone behind it")
	fs.BoolVar(&o.OpenStack, "openstack", false, "also run Placement, Neutron, Glance and Nova with the ironic driver (Debian's; make deps installs them) behind Keystone, with a Nova server on every fourth node (implies -keystone)")
	fs.StringVar(&o.DataDir, "data", ".data", "directory for the Temporal database, the node store, logs and nova-events.log (reused by the next run)")
	fs.StringVar(&o.TemporalCLI, "temporal-cli", "tools/bin/temporal", "the temporal CLI (make tools/bin/temporal)")
	fs.StringVar(&o.Worker, "worker", "", "the worker binary (default: worker beside this starter)")
	fs.IntVar(&o.Redfish, "redfish", 40, "simulated Redfish nodes (rf-01..)")
	fs.IntVar(&o.IPMI, "ipmi", 8, "simulated IPMI nodes (ipmi-1..)")
	fs.IntVar(&o.APIPort, "api-port", 6385, "REST API port on 127.0.0.1")
	fs.IntVar(&o.TemporalPort, "temporal-port", 7233, "Temporal frontend port on 127.0.0.1")
	fs.IntVar(&o.UIPort, "ui-port", 8233, "Temporal Web UI port on 127.0.0.1")
	fs.StringVar(&o.RedfishAddr, "redfish-addr", "127.0.0.1:8000", "where the simulated Redfish fleet listens")
	fs.IntVar(&o.SyncInterval, "sync-interval", 60, "seconds between power sync passes")
	fs.IntVar(&o.RecoveryInterval, "recovery-interval", 120, "seconds between power failure recovery passes")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	return demo.Run(ctx, o, env.Stdout)
}
