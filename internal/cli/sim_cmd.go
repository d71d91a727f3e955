package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

func init() {
	register("sim redfish", "sim redfish [-addr HOST:PORT] [-systems N] [-latency D] [-transition-delay D]   serve a simulated Redfish fleet", simRedfish)
	register("sim ipmi", "sim ipmi [-bmcs N] [-latency D] [-transition-delay D]   run simulated IPMI BMCs on 127.0.0.1", simIPMI)
}

func simRedfish(ctx context.Context, env *Env, args []string) error {
	fs := flags("sim redfish", env)
	addr := fs.String("addr", "127.0.0.1:8000", "listen address")
	systems := fs.Int("systems", 40, "number of systems (IDs 1..N)")
	o := simFlags(fs, "the BMC accepts", "added to every request")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	sim := redfishsim.New(redfishsim.Options{Systems: *systems, Username: o.user, Password: o.pass, Latency: o.latency, TransitionDelay: o.delay})
	errc := make(chan error, 1)
	go func() { errc <- sim.ListenAndServe(*addr) }()
	fmt.Fprintf(env.Stdout, "Redfish simulator: http://%s/redfish/v1 with %d systems (/redfish/v1/Systems/1..%d)\n", *addr, *systems, *systems)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sim.Close()
		return nil
	}
}

func simIPMI(ctx context.Context, env *Env, args []string) error {
	fs := flags("sim ipmi", env)
	n := fs.Int("bmcs", 8, "number of BMCs, one UDP port each")
	o := simFlags(fs, "the BMCs accept", "added to every chassis command")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	fleet, err := ipmisim.Start(ipmisim.Options{BMCs: *n, Username: o.user, Password: o.pass, Latency: o.latency, TransitionDelay: o.delay})
	if err != nil {
		return err
	}
	defer fleet.Close()
	for i, b := range fleet.BMCs() {
		fmt.Fprintf(env.Stdout, "bmc %d: %s port %d (ipmitool -I lanplus -C 3 -H %s -p %d -U %s -P ...)\n", i+1, b.Host, b.Port, b.Host, b.Port, o.user)
	}
	<-ctx.Done()
	return nil
}

// simOptions are the flags both simulators take: the credentials their BMCs
// accept and how slow they are.
type simOptions struct {
	user, pass     string
	latency, delay time.Duration
}

// simFlags declares the simulators' common flags on fs. The help differs
// only in its words: accepts ends "user name" and "password", latencyHelp
// says what -latency delays.
func simFlags(fs *flag.FlagSet, accepts, latencyHelp string) *simOptions {
	o := &simOptions{}
	fs.StringVar(&o.user, "username", "admin", "user name "+accepts)
	fs.StringVar(&o.pass, "password", "password", "password "+accepts)
	fs.DurationVar(&o.latency, "latency", 0, latencyHelp)
	fs.DurationVar(&o.delay, "transition-delay", 0, "time a power change takes to show")
	return o
}
