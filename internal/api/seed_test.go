package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// The seed scenario: why Ironic tells Nova about power changes. nova-compute
// syncs its instances against Ironic periodically (novasim.ComputeSync,
// nova's _sync_power_states) and acts on any disagreement through Ironic's
// API. A power change made through the API but not reported to Nova
// (send_power_notifications=false) leaves Nova's record stale:
//
//   - powered off behind Nova's back, the instance is stopped by Nova's
//     stop API (a power off Ironic skips): Nova follows, the node stays off;
//   - powered on behind Nova's back, the instance is still "stopped" to
//     Nova, whose force_stop powers the node off again: Nova's stale view
//     wins over the API. The POWER_ON power-update event prevents that.
//
// With notifications on, Nova's record follows each change and the sync
// finds nothing to do. Everything is real but Nova: the API, Temporal, the
// worker, the Redfish BMC simulator.
func TestSeedNovaComputeSyncAgainstAPI(t *testing.T) {
	type novaState struct {
		vm, power string
		actions   []string
	}
	tests := []struct {
		name    string
		notify  bool
		startOn bool   // node on and instance active, else off and stopped
		target  string // the power change made through the API

		wantTags     []string  // power-update events Nova accepted
		wantAfterAPI novaState // Nova's record once the change is over
		wantForced   []string  // Actions of the forced stops, each a "power off"
		wantNova     novaState // Nova's record after the syncs
		wantPower    string    // node record and hardware at the end
		wantResets   []string  // Redfish resets the BMC received
		// wantConflict: metalpower records the tug of war in the node
		// history (the race the seed admits), instead of staying silent.
		wantConflict bool
	}{
		{
			name: "power off, notifications on: Nova follows, nothing forced", notify: true, startOn: true, target: node.PowerOff,
			wantTags:     []string{"POWER_OFF"},
			wantAfterAPI: novaState{"stopped", "shutdown", []string{"stop"}},
			wantNova:     novaState{"stopped", "shutdown", []string{"stop"}},
			wantPower:    node.PowerOff, wantResets: []string{"ForceOff"},
		},
		{
			name: "power off, notifications off: Nova stops the instance, node stays off", startOn: true, target: node.PowerOff,
			wantAfterAPI: novaState{"active", "running", nil},
			wantForced:   []string{"stop"},
			wantNova:     novaState{"stopped", "shutdown", []string{"stop"}},
			wantPower:    node.PowerOff, wantResets: []string{"ForceOff"}, // Nova's power off is skipped
		},
		{
			name: "power on, notifications on: Nova follows, nothing forced", notify: true, target: node.PowerOn,
			wantTags:     []string{"POWER_ON"},
			wantAfterAPI: novaState{"active", "running", []string{"start"}},
			wantNova:     novaState{"active", "running", []string{"start"}},
			wantPower:    node.PowerOn, wantResets: []string{"On"},
		},
		{
			name: "power on, notifications off: Nova's stale view wins, node powered off again", target: node.PowerOn,
			wantAfterAPI: novaState{"stopped", "shutdown", nil},
			wantForced:   []string{"force_stop"},
			wantNova:     novaState{"stopped", "shutdown", []string{"stop"}},
			wantPower:    node.PowerOff, wantResets: []string{"On", "ForceOff"}, wantConflict: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1, Configure: func(c *config.Config) {
				c.Nova.SendPowerNotifications = tt.notify
			}})
			const instance = "5eed0000-1111-4222-8333-444455556666"
			n := s.AddRedfishNode(t, "seed-1", "1", instance)
			if !tt.startOn {
				s.Redfish.SetPowerState("1", "Off")
				if _, err := store.Modify(context.Background(), s.Store, n.UUID, func(n *node.Node) error {
					n.PowerState = node.PowerOff
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				s.Nova.AddInstance(instance, "compute-1", "stopped", "shutdown")
			}
			url := s.StartAPI(t, nil)

			// The operator's change, as a client of Ironic's API makes it.
			if status, body := seedCall(t, http.MethodPut, url+"/v1/nodes/"+n.UUID+"/states/power", `{"target":"`+tt.target+`"}`); status != http.StatusAccepted {
				t.Fatalf("PUT states/power: %d %s", status, body)
			}
			st := seedWaitStates(t, url, n.UUID)
			if st.PowerState == nil || *st.PowerState != tt.target || st.LastError != nil {
				t.Fatalf("after the change: power_state %v, last_error %v", seedStr(st.PowerState), seedStr(st.LastError))
			}
			// The event reaches Nova after the change ends; wait for it.
			itest.WaitFor(t, 30*time.Second, "Nova's record", func() bool {
				inst, _ := s.Nova.Instance(instance)
				return inst.VMState == tt.wantAfterAPI.vm && inst.PowerState == tt.wantAfterAPI.power
			})
			if inst, _ := s.Nova.Instance(instance); !slices.Equal(inst.Actions, tt.wantAfterAPI.actions) {
				t.Errorf("Nova actions after the change = %q, want %q", inst.Actions, tt.wantAfterAPI.actions)
			}

			// nova-compute's periodic task, several times: what it does is
			// done once, and then it agrees with Ironic.
			cs := s.Nova.StartComputeSync(url, 0)
			defer cs.Stop()
			for range 3 {
				cs.SyncNow()
			}

			forced := cs.Forced()
			var actions []string
			for _, f := range forced {
				actions = append(actions, f.Action)
				if f.InstanceUUID != instance || f.NodeUUID != n.UUID || f.Target != node.PowerOff || f.Err != "" {
					t.Errorf("forced %+v, want a power off of node %s for %s", f, n.UUID, instance)
				}
			}
			if !slices.Equal(actions, tt.wantForced) {
				t.Errorf("forced actions = %q, want %q", actions, tt.wantForced)
			}
			if errs := cs.Errors(); len(errs) != 0 {
				t.Errorf("sync errors: %v", errs)
			}

			inst, _ := s.Nova.Instance(instance)
			if got := (novaState{inst.VMState, inst.PowerState, inst.Actions}); got.vm != tt.wantNova.vm || got.power != tt.wantNova.power ||
				!slices.Equal(got.actions, tt.wantNova.actions) || inst.TaskState != "" {
				t.Errorf("Nova's record = %+v (task %q), want %+v", got, inst.TaskState, tt.wantNova)
			}
			if got := s.NovaTags(instance); !slices.Equal(got, tt.wantTags) {
				t.Errorf("power-update events = %q, want %q", got, tt.wantTags)
			}
			for _, e := range s.Nova.Events() {
				if e.Code != http.StatusOK {
					t.Errorf("Nova refused event %+v", e)
				}
			}

			wantHW := map[string]string{node.PowerOn: "On", node.PowerOff: "Off"}[tt.wantPower]
			if got := s.Redfish.PowerState("1"); got != wantHW {
				t.Errorf("hardware is %s, want %s", got, wantHW)
			}
			if got := s.Redfish.Resets("1"); !slices.Equal(got, tt.wantResets) {
				t.Errorf("Redfish resets = %q, want %q", got, tt.wantResets)
			}
			st = seedWaitStates(t, url, n.UUID)
			if seedStr(st.PowerState) != tt.wantPower || st.LastError != nil {
				t.Errorf("API states: power_state %q, last_error %q; want %q and null", seedStr(st.PowerState), seedStr(st.LastError), tt.wantPower)
			}
			if rec := s.Node(t, n.UUID); rec.PowerState != tt.wantPower || rec.TargetPowerState != "" || rec.LastError != "" || rec.InstanceUUID != instance {
				t.Errorf("node record: power %q target %q last_error %q instance %q", rec.PowerState, rec.TargetPowerState, rec.LastError, rec.InstanceUUID)
			}
			conflicts, err := s.Store.History(context.Background(), n.UUID, store.EventConflict, 0)
			if err != nil || (len(conflicts) > 0) != tt.wantConflict {
				t.Errorf("conflicts in the node history = %+v (%v), want some: %v", conflicts, err, tt.wantConflict)
			}
		})
	}
}

// seedStates is the part of GET /v1/nodes/{id}/states the seed test reads.
type seedStates struct {
	PowerState       *string `json:"power_state"`
	TargetPowerState *string `json:"target_power_state"`
	LastError        *string `json:"last_error"`
}

// seedWaitStates polls the node's states until target_power_state is null,
// as Ironic's clients wait for a power change to end.
func seedWaitStates(t *testing.T, url, uuid string) seedStates {
	t.Helper()
	var st seedStates
	itest.WaitFor(t, 60*time.Second, "target_power_state to be null", func() bool {
		status, body := seedCall(t, http.MethodGet, url+"/v1/nodes/"+uuid+"/states", "")
		if status != http.StatusOK {
			t.Fatalf("GET states: %d %s", status, body)
		}
		st = seedStates{}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("GET states: %v: %s", err, body)
		}
		return st.TargetPowerState == nil
	})
	return st
}

// seedCall makes one API request at microversion 1.95 and returns the
// status and body.
func seedCall(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.95")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func seedStr(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}
