package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/store"
)

// driverNames lists the drivers this build has, for the usage line.
func driverNames() string {
	var names []string
	for _, d := range bmc.Drivers() {
		names = append(names, d.Name)
	}
	return strings.Join(names, "|")
}

func init() {
	register("node create", "node create --driver "+driverNames()+" --driver-info KEY=VALUE... [--name N] [--uuid U] [--instance-uuid U] [--extra KEY=VALUE...]", nodeCreate)
	register("node list", "node list [--maintenance true|false] [--provision-state S] [--driver D] [--limit N] [--marker UUID]", nodeList)
	register("node show", "node show NODE", nodeShow)
	register("node delete", "node delete NODE", nodeDelete)
	register("node manage", "node manage NODE      read the BMC to verify access and record the power state: enroll -> manageable", nodeManage)
	register("node history", "node history NODE     power changes and conflicts, newest first", nodeHistory)
	register("node provide", "node provide NODE     manageable -> available", nodeProvide)
	register("node adopt", "node adopt NODE       read the BMC, then manageable -> active (a server already running a workload)", nodeAdopt)
	register("node maintenance set", "node maintenance set NODE [--reason TEXT]", nodeMaintenanceSet)
	register("node maintenance unset", "node maintenance unset NODE", nodeMaintenanceUnset)
}

func nodeProvide(ctx context.Context, env *Env, args []string) error {
	return withNode(ctx, env, "node provide", args, func(s store.Store, ident string) error {
		n, err := operator.Provide(ctx, s, ident)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "node %s is %s\n", n.Ident(), n.ProvisionState)
		return nil
	})
}

func nodeAdopt(ctx context.Context, env *Env, args []string) error {
	return withBMC(ctx, env, "node adopt", args, operator.Adopt)
}

// withBMC runs a provision action that reads the node's BMC: a
// NodeProvision workflow on a worker of the node's conductor group.
func withBMC(ctx context.Context, env *Env, name string, args []string,
	action func(context.Context, operator.Workers, store.Store, string) (*node.Node, error)) error {
	ident, err := oneNode(name, env, args)
	if err != nil {
		return err
	}
	return withTemporal(ctx, env, func(cfg config.Config, c client.Client) error {
		return withStore(ctx, env, func(s store.Store) error {
			n, err := action(ctx, operator.Workers{Client: c, TaskQueue: cfg.Temporal.TaskQueue}, s, ident)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "node %s is %s, power state %s\n", n.Ident(), n.ProvisionState, orNone(n.PowerState))
			return nil
		})
	})
}

func nodeMaintenanceSet(ctx context.Context, env *Env, args []string) error {
	fs := flags("node maintenance set", env)
	reason := fs.String("reason", "", "why the node is in maintenance")
	if err := fs.Parse(reorder(fs, args)); err != nil || fs.NArg() != 1 {
		return errUsage
	}
	return withStore(ctx, env, func(s store.Store) error {
		n, err := operator.SetMaintenance(ctx, s, fs.Arg(0), *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "node %s is in maintenance\n", n.Ident())
		return nil
	})
}

func nodeMaintenanceUnset(ctx context.Context, env *Env, args []string) error {
	return withNode(ctx, env, "node maintenance unset", args, func(s store.Store, ident string) error {
		n, err := operator.UnsetMaintenance(ctx, s, ident)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "node %s is out of maintenance\n", n.Ident())
		return nil
	})
}

func printNode(env *Env, n *node.Node) error {
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, string(b))
	return nil
}

func nodeCreate(ctx context.Context, env *Env, args []string) error {
	fs := flags("node create", env)
	name := fs.String("name", "", "unique name")
	uuid := fs.String("uuid", "", "UUID (generated when empty)")
	driver := fs.String("driver", "", "ipmi or redfish")
	instance := fs.String("instance-uuid", "", "Nova instance on the node")
	info, extra := keyValues{}, keyValues{}
	fs.Var(info, "driver-info", "driver_info KEY=VALUE (repeat)")
	fs.Var(extra, "extra", "extra KEY=VALUE (repeat)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	n := node.New(*uuid, *name, *driver, node.DriverInfo{})
	for k, v := range info {
		n.DriverInfo[k] = v
	}
	if len(extra) > 0 {
		n.Extra = map[string]any{}
		for k, v := range extra {
			n.Extra[k] = v
		}
	}
	n.InstanceUUID = *instance
	return withStore(ctx, env, func(s store.Store) error {
		if err := s.Create(ctx, n); err != nil {
			return err
		}
		return printNode(env, n)
	})
}

func nodeList(ctx context.Context, env *Env, args []string) error {
	fs := flags("node list", env)
	maint := fs.String("maintenance", "", "true or false")
	prov := fs.String("provision-state", "", "only nodes in this provision state")
	driver := fs.String("driver", "", "only nodes with this driver")
	limit := fs.Int("limit", 0, "at most this many nodes (default 1000)")
	marker := fs.String("marker", "", "start after the node with this UUID")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	q := store.Query{Limit: *limit, Marker: *marker}
	q.Driver = *driver
	if *prov != "" {
		q.ProvisionStates = []string{*prov}
	}
	switch *maint {
	case "":
	case "true", "false":
		q.Maintenance = store.Bool(*maint == "true")
	default:
		return fmt.Errorf("--maintenance %q: use true or false", *maint)
	}
	return withStore(ctx, env, func(s store.Store) error {
		nodes, err := s.List(ctx, q)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UUID\tNAME\tDRIVER\tPOWER STATE\tPROVISION STATE\tMAINTENANCE")
		for _, n := range nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", n.UUID, orNone(n.Name), n.Driver, orNone(n.PowerState), n.ProvisionState, n.Maintenance)
		}
		return tw.Flush()
	})
}

func orNone(s string) string {
	if s == "" {
		return "None"
	}
	return s
}

func nodeShow(ctx context.Context, env *Env, args []string) error {
	return withNode(ctx, env, "node show", args, func(s store.Store, ident string) error {
		n, err := s.Get(ctx, ident)
		if err != nil {
			return err
		}
		return printNode(env, n)
	})
}

func nodeDelete(ctx context.Context, env *Env, args []string) error {
	return withNode(ctx, env, "node delete", args, func(s store.Store, ident string) error {
		n, err := s.Get(ctx, ident)
		if err != nil {
			return err
		}
		if err := s.Delete(ctx, n.UUID); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "deleted node %s\n", n.UUID)
		return nil
	})
}

func nodeManage(ctx context.Context, env *Env, args []string) error {
	return withBMC(ctx, env, "node manage", args, operator.Manage)
}

func nodeHistory(ctx context.Context, env *Env, args []string) error {
	return withNode(ctx, env, "node history", args, func(s store.Store, ident string) error {
		n, err := s.Get(ctx, ident)
		if err != nil {
			return err
		}
		events, err := s.History(ctx, n.UUID, "", 0)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CREATED AT\tSEVERITY\tTYPE\tEVENT")
		for _, e := range events {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.CreatedAt.Format(time.RFC3339), e.Severity, e.Type, e.Event)
		}
		return tw.Flush()
	})
}
