package node

import (
	"errors"
	"testing"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		action, from string
		want         Move // To == "": refused
	}{
		{ActionManage, Enroll, Move{To: Manageable, ReadBMC: true, FailPrefix: "Failed to verify node power access: "}},
		{ActionManage, Available, Move{To: Manageable}},
		{ActionManage, CleanFailed, Move{To: Manageable}},
		{ActionManage, InspectFail, Move{To: Manageable}},
		{ActionManage, Manageable, Move{}},
		{ActionManage, Active, Move{}},
		{ActionProvide, Manageable, Move{To: Available}},
		{ActionProvide, Enroll, Move{}},
		{ActionProvide, Active, Move{}},
		{ActionAdopt, Manageable, Move{To: Active, ReadBMC: true, FailState: AdoptFailed, FailPrefix: "Failed to adopt node: "}},
		{ActionAdopt, AdoptFailed, Move{To: Active, ReadBMC: true, FailState: AdoptFailed, FailPrefix: "Failed to adopt node: "}},
		{ActionAdopt, Available, Move{}},
		{"deploy", Available, Move{}},
	}
	for _, tt := range tests {
		t.Run(tt.action+" from "+tt.from, func(t *testing.T) {
			got, err := Plan(&Node{UUID: "u1", ProvisionState: tt.from}, tt.action)
			if tt.want.To == "" {
				if !errors.Is(err, ErrInvalidState) {
					t.Fatalf("Plan = %+v, %v; want ErrInvalidState", got, err)
				}
				want := `invalid provision state: the requested action "` + tt.action + `" can not be performed on node "u1" while it is in state "` + tt.from + `"`
				if err.Error() != want {
					t.Errorf("error %q, want %q", err, want)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Plan = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestMoveApply(t *testing.T) {
	manage, _ := Plan(&Node{ProvisionState: Enroll}, ActionManage)
	adopt, _ := Plan(&Node{ProvisionState: Manageable}, ActionAdopt)
	provide, _ := Plan(&Node{ProvisionState: Manageable}, ActionProvide)
	readErr := errors.New("BMC unreachable")
	tests := []struct {
		name      string
		move      Move
		from      Node
		power     string
		err       error
		wantState string
		wantPower string
		wantError string
	}{
		{"manage reads the power", manage, Node{ProvisionState: Enroll, LastError: "old"}, PowerOff, nil, Manageable, PowerOff, ""},
		{"manage fails in enroll", manage, Node{ProvisionState: Enroll}, "", readErr, Enroll, "", "Failed to verify node power access: BMC unreachable"},
		{"adopt reads the power", adopt, Node{ProvisionState: Manageable}, PowerOn, nil, Active, PowerOn, ""},
		{"adopt fails to adopt failed", adopt, Node{ProvisionState: Manageable}, "", readErr, AdoptFailed, "", "Failed to adopt node: BMC unreachable"},
		{"provide keeps power and last_error", provide, Node{ProvisionState: Manageable, PowerState: PowerOn, LastError: "kept"}, "", nil, Available, PowerOn, "kept"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.from
			tt.move.Apply(&n, tt.power, tt.err)
			if n.ProvisionState != tt.wantState || n.PowerState != tt.wantPower || n.LastError != tt.wantError {
				t.Errorf("got %q, %q, %q; want %q, %q, %q", n.ProvisionState, n.PowerState, n.LastError, tt.wantState, tt.wantPower, tt.wantError)
			}
		})
	}
}

func TestMaintenance(t *testing.T) {
	powerFailure := Node{Maintenance: true, MaintenanceReason: "sync", Fault: FaultPowerFailure}
	tests := []struct {
		name          string
		from          Node
		apply         func(n *Node)
		maint         bool
		reason, fault string
	}{
		{"set keeps a power failure fault", powerFailure, func(n *Node) { n.SetMaintenance("operator") }, true, "operator", FaultPowerFailure},
		{"set on a node out of maintenance", Node{}, func(n *Node) { n.SetMaintenance("rack move") }, true, "rack move", ""},
		{"set without a reason", powerFailure, func(n *Node) { n.SetMaintenance("") }, true, "", FaultPowerFailure},
		{"unset clears reason and fault", powerFailure, func(n *Node) { n.UnsetMaintenance() }, false, "", ""},
		{"patch maintenance=false clears reason and fault", powerFailure, func(n *Node) { n.Maintenance = false; n.LeftMaintenance(true) }, false, "", ""},
		{"patch maintenance=true keeps them", powerFailure, func(n *Node) { n.Maintenance = true; n.LeftMaintenance(true) }, true, "sync", FaultPowerFailure},
		{"patch of a node out of maintenance", Node{}, func(n *Node) { n.LeftMaintenance(false) }, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.from
			tt.apply(&n)
			if n.Maintenance != tt.maint || n.MaintenanceReason != tt.reason || n.Fault != tt.fault {
				t.Errorf("got maintenance %v, reason %q, fault %q; want %v, %q, %q", n.Maintenance, n.MaintenanceReason, n.Fault, tt.maint, tt.reason, tt.fault)
			}
		})
	}
}
