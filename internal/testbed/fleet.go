// Package testbed assembles what metalpower runs against when it is not
// in a data centre: a simulated fleet (Redfish systems, IPMI BMCs), the
// Nova and Keystone simulator, and a worker. The integration tests
// (internal/testbed/itest), `make demo`, `starter bench` and the chaos
// run all build on it; the dev server is internal/testbed/devserver.
package testbed

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

// Credentials the simulators accept. They are distinctive, so a test can
// search histories, logs and answers for them.
const (
	BMCUser          = "admin"
	IPMIPassword     = "ipmi-S3cret-7731"
	RedfishPassword  = "redfish-S3cret-9124"
	NovaUser         = "ironic"
	KeystonePassword = "keystone-S3cret-4410"
	NovaProject      = "service"
)

// FleetOptions shapes a fleet.
type FleetOptions struct {
	// Redfish systems (IDs "1".."N") in one service, and IPMI BMCs, one
	// UDP port each (none when 0). Nova always runs.
	Redfish, IPMI int
	// Latency is added to every BMC request; TransitionDelay is how long
	// a power change takes to show, as on real hardware.
	Latency, TransitionDelay time.Duration
	// RedfishListener serves the Redfish service (nil: a free loopback
	// port).
	RedfishListener net.Listener
}

// Fleet is the simulated hardware and cloud.
type Fleet struct {
	Redfish    *redfishsim.Sim
	RedfishURL string
	IPMI       *ipmisim.Fleet
	Nova       *novasim.Sim
	AuthURL    string
}

// StartFleet starts the simulators; Close stops them.
func StartFleet(opts FleetOptions) (f *Fleet, err error) {
	f = &Fleet{}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if opts.Redfish > 0 {
		f.Redfish = redfishsim.New(redfishsim.Options{Systems: opts.Redfish, Username: BMCUser, Password: RedfishPassword,
			Latency: opts.Latency, TransitionDelay: opts.TransitionDelay})
		if opts.RedfishListener == nil {
			f.RedfishURL = f.Redfish.Start()
		} else if f.RedfishURL, err = f.Redfish.StartOn(opts.RedfishListener); err != nil {
			return nil, err
		}
	}
	if opts.IPMI > 0 {
		f.IPMI, err = ipmisim.Start(ipmisim.Options{BMCs: opts.IPMI, Username: BMCUser, Password: IPMIPassword,
			Latency: opts.Latency, TransitionDelay: opts.TransitionDelay})
		if err != nil {
			return nil, err
		}
	}
	f.Nova = novasim.New(novasim.Options{Username: NovaUser, Password: KeystonePassword, ProjectName: NovaProject})
	f.AuthURL = f.Nova.Start()
	return f, nil
}

// Close stops the simulators.
func (f *Fleet) Close() {
	if f.Redfish != nil {
		f.Redfish.Close()
	}
	if f.IPMI != nil {
		f.IPMI.Close()
	}
	if f.Nova != nil {
		f.Nova.Close()
	}
}

// RedfishInfo is the driver_info of Redfish system id.
func (f *Fleet) RedfishInfo(id string) node.DriverInfo {
	return RedfishInfo(f.Redfish, f.RedfishURL, id)
}

// RedfishInfo is the driver_info of system id of sim, served at url with
// the test bed's credentials.
func RedfishInfo(sim *redfishsim.Sim, url, id string) node.DriverInfo {
	return node.DriverInfo{"redfish_address": url, "redfish_system_id": sim.SystemPath(id),
		"redfish_username": BMCUser, "redfish_password": RedfishPassword}
}

// IPMIInfo is the driver_info of IPMI BMC i (from 0).
func (f *Fleet) IPMIInfo(i int) node.DriverInfo {
	b := f.IPMI.BMCs()[i]
	return node.DriverInfo{"ipmi_address": b.Host, "ipmi_port": float64(b.Port), "ipmi_username": BMCUser, "ipmi_password": IPMIPassword}
}

// Configure points cfg at the fleet: Nova's simulator and BMCs that take
// commands at any pace.
func (f *Fleet) Configure(cfg *config.Config) {
	cfg.Nova.AuthURL, cfg.Nova.Username, cfg.Nova.Password, cfg.Nova.ProjectName = f.AuthURL, NovaUser, KeystonePassword, NovaProject
	// The 5 s default protects fragile real BMCs; the simulators take
	// any pace. A faulty simulated BMC fails every attempt: give up in
	// 10 s, not 60.
	cfg.IPMI.MinCommandInterval = 0
	cfg.IPMI.CommandRetryTimeout = 10
}

// Env is cfg as METALPOWER_* variables for a worker or API run as a
// separate process: the settings the test bed changes from the defaults.
func Env(cfg config.Config) []string {
	return []string{
		"METALPOWER_TEMPORAL_ADDRESS=" + cfg.Temporal.Address,
		"METALPOWER_TEMPORAL_TASK_QUEUE=" + cfg.Temporal.TaskQueue,
		"METALPOWER_TEMPORAL_DEPLOYMENT_NAME=" + cfg.Temporal.DeploymentName,
		"METALPOWER_TEMPORAL_BUILD_ID=" + cfg.Temporal.BuildID,
		"METALPOWER_DATABASE_URL=" + cfg.Database.URL,
		"METALPOWER_NOVA_AUTH_URL=" + cfg.Nova.AuthURL,
		"METALPOWER_NOVA_USERNAME=" + cfg.Nova.Username,
		"METALPOWER_NOVA_PASSWORD=" + cfg.Nova.Password,
		"METALPOWER_NOVA_PROJECT_NAME=" + cfg.Nova.ProjectName,
		"METALPOWER_IPMI_COMMAND_RETRY_TIMEOUT=" + strconv.Itoa(cfg.IPMI.CommandRetryTimeout),
		"METALPOWER_IPMI_MIN_COMMAND_INTERVAL=" + strconv.Itoa(cfg.IPMI.MinCommandInterval),
		"METALPOWER_LOG_FORMAT=json",
	}
}

// ChildEnv is the environment of a process the test bed starts: this
// process's without any METALPOWER_* variable (a worker rejects unknown
// ones, and the caller's own settings must not leak in), plus vars.
func ChildEnv(vars ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			env = append(env, kv)
		}
	}
	return append(env, vars...)
}

// StartWorker creates a worker in this process and starts it; Stop and
// Close end it.
func StartWorker(ctx context.Context, cfg config.Config, log zerolog.Logger, opts conductor.WorkerOptions) (*conductor.Worker, error) {
	w, err := conductor.NewWorker(ctx, cfg, log, opts)
	if err != nil {
		return nil, err
	}
	if err := w.Start(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}
