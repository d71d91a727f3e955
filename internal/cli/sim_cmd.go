package cli

import (
	"context"
	"fmt"

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
	user := fs.String("username", "admin", "user name the BMC accepts")
	pass := fs.String("password", "password", "password the BMC accepts")
	latency := fs.Duration("latency", 0, "added to every request")
	delay := fs.Duration("transition-delay", 0, "time a power change takes to show")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	sim := redfishsim.New(redfishsim.Options{Systems: *systems, Username: *user, Password: *pass, Latency: *latency, TransitionDelay: *delay})
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
	user := fs.String("username", "admin", "user name the BMCs accept")
	pass := fs.String("password", "password", "password the BMCs accept")
	latency := fs.Duration("latency", 0, "added to every chassis command")
	delay := fs.Duration("transition-delay", 0, "time a power change takes to show")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	fleet, err := ipmisim.Start(ipmisim.Options{BMCs: *n, Username: *user, Password: *pass, Latency: *latency, TransitionDelay: *delay})
	if err != nil {
		return err
	}
	defer fleet.Close()
	for i, b := range fleet.BMCs() {
		fmt.Fprintf(env.Stdout, "bmc %d: %s port %d (ipmitool -I lanplus -C 3 -H %s -p %d -U %s -P ...)\n", i+1, b.Host, b.Port, b.Host, b.Port, *user)
	}
	<-ctx.Done()
	return nil
}
