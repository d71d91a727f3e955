package chaos_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

// fleetNode is one enrolled node and the simulated hardware behind it.
type fleetNode struct {
	UUID, Name string
	Driver     string
	// System is the Redfish system ID; BMC the IPMI BMC's index.
	System   string
	BMC      int
	Instance string
	// InitialOn is how it starts, hardware and record alike.
	InitialOn bool
}

// fleet is the simulated hardware and cloud: one Redfish service with
// most nodes, a few IPMI BMCs, and Nova with instances on two nodes of
// three.
type fleet struct {
	*testbed.Fleet
	Nodes  []*fleetNode
	byUUID map[string]*fleetNode

	mu     sync.Mutex
	faults map[string]bool // node UUIDs with a fault injected now
}

func newFleet(t *testing.T, nodes, ipmiNodes int, delay time.Duration) *fleet {
	t.Helper()
	rfNodes := nodes - ipmiNodes
	f := &fleet{byUUID: map[string]*fleetNode{}, faults: map[string]bool{}}
	var err error
	f.Fleet, err = testbed.StartFleet(testbed.FleetOptions{Redfish: rfNodes, IPMI: ipmiNodes, TransitionDelay: delay})
	if err != nil {
		t.Fatalf("start the simulated fleet: %v", err)
	}
	t.Cleanup(f.Fleet.Close)

	for i := 0; i < nodes; i++ {
		n := &fleetNode{UUID: uuid.NewString(), Name: fmt.Sprintf("chaos-%04d", i), InitialOn: i%4 != 3}
		if i < rfNodes {
			n.Driver, n.System = redfish.Name, fmt.Sprint(i+1)
			if !n.InitialOn {
				f.Redfish.SetPowerState(n.System, "Off")
			}
		} else {
			n.Driver, n.BMC = ipmi.Name, i-rfNodes
			f.IPMI.BMCs()[n.BMC].SetPowerOn(n.InitialOn)
		}
		if i%3 != 2 {
			n.Instance = uuid.NewString()
			if n.InitialOn {
				f.Nova.AddInstance(n.Instance, "compute-1", "active", "running")
			} else {
				f.Nova.AddInstance(n.Instance, "compute-1", "stopped", "shutdown")
			}
		}
		f.Nodes = append(f.Nodes, n)
		f.byUUID[n.UUID] = n
	}
	return f
}

// enroll writes every node into the store, its recorded power state
// matching the hardware.
func (f *fleet) enroll(ctx context.Context, st store.Store) error {
	for _, fn := range f.Nodes {
		info := f.IPMIInfo(fn.BMC)
		if fn.Driver == redfish.Name {
			info = f.RedfishInfo(fn.System)
		}
		n := node.New(fn.UUID, fn.Name, fn.Driver, info)
		n.ProvisionState, n.PowerState = node.Manageable, node.PowerOff
		if fn.InitialOn {
			n.PowerState = node.PowerOn
		}
		if fn.Instance != "" {
			n.InstanceUUID, n.ProvisionState = fn.Instance, node.Active
		}
		if err := st.Create(ctx, n); err != nil {
			return fmt.Errorf("enroll %s: %w", fn.Name, err)
		}
	}
	return nil
}

// Hardware is a node's power as its simulator has it: "power on" or
// "power off" (a transition in progress reads as where it is now).
func (f *fleet) Hardware(fn *fleetNode) string {
	on := false
	if fn.Driver == redfish.Name {
		on = f.Redfish.PowerState(fn.System) == "On"
	} else {
		on = f.IPMI.BMCs()[fn.BMC].PowerOn()
	}
	if on {
		return node.PowerOn
	}
	return node.PowerOff
}

// breakBMCs injects faults into the BMCs of nodes: Redfish ones answer
// 500 (with hang, one of them never answers), IPMI ones fail their
// chassis commands.
func (f *fleet) breakBMCs(nodes []*fleetNode, hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	hung := !hang
	for _, fn := range nodes {
		f.faults[fn.UUID] = true
		switch {
		case fn.Driver == ipmi.Name:
			f.IPMI.BMCs()[fn.BMC].SetFault(ipmisim.FaultError)
		case !hung:
			hung = true
			f.Redfish.SetFault(fn.System, redfishsim.FaultHang)
		default:
			f.Redfish.SetFault(fn.System, redfishsim.FaultServerError)
		}
	}
}

// repairBMCs clears the faults of nodes.
func (f *fleet) repairBMCs(nodes []*fleetNode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fn := range nodes {
		delete(f.faults, fn.UUID)
		if fn.Driver == ipmi.Name {
			f.IPMI.BMCs()[fn.BMC].SetFault(ipmisim.FaultNone)
		} else {
			f.Redfish.SetFault(fn.System, redfishsim.FaultNone)
		}
	}
}

// flip switches nodes' power by hand (someone at the server, or another
// tool): the sync must find it and force the recorded state back.
func (f *fleet) flip(nodes []*fleetNode) {
	for _, fn := range nodes {
		if fn.Driver == ipmi.Name {
			b := f.IPMI.BMCs()[fn.BMC]
			b.SetPowerOn(!b.PowerOn())
		} else if f.Redfish.PowerState(fn.System) == "On" {
			f.Redfish.SetPowerState(fn.System, "Off")
		} else {
			f.Redfish.SetPowerState(fn.System, "On")
		}
	}
}

// setPower sets a node's power by hand.
func (f *fleet) setPower(fn *fleetNode, on bool) {
	if fn.Driver == ipmi.Name {
		f.IPMI.BMCs()[fn.BMC].SetPowerOn(on)
	} else if on {
		f.Redfish.SetPowerState(fn.System, "On")
	} else {
		f.Redfish.SetPowerState(fn.System, "Off")
	}
}

// repairAll clears every fault the test may have injected.
func (f *fleet) repairAll() {
	f.repairBMCs(f.Nodes)
	f.Nova.SetOutage(novasim.OutageNone)
}

// novaPowerState is the power state Nova holds for an instance, in
// Ironic's words ("" when Nova's state is neither).
func (f *fleet) novaPowerState(instance string) (string, novasim.Instance) {
	inst, ok := f.Nova.Instance(instance)
	switch {
	case !ok:
		return "", inst
	case inst.VMState == "active" && inst.PowerState == "running":
		return node.PowerOn, inst
	case inst.VMState == "stopped" && inst.PowerState == "shutdown":
		return node.PowerOff, inst
	}
	return "", inst
}
