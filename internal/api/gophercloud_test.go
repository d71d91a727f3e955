package api_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// client is gophercloud's bare metal client on the API, at microversion mv.
func bmClient(t *testing.T, url, mv string) *gophercloud.ServiceClient {
	t.Helper()
	c, err := noauth.NewBareMetalNoAuth(noauth.EndpointOpts{IronicEndpoint: url + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	c.Microversion = mv
	return c
}

// waitIdle polls the node until no power change is in progress, as Ironic
// clients do.
func waitIdle(t *testing.T, c *gophercloud.ServiceClient, id string) *nodes.Node {
	t.Helper()
	var n *nodes.Node
	itest.WaitFor(t, 30*time.Second, "the power change to end", func() bool {
		var err error
		n, err = nodes.Get(context.Background(), c, id).Extract()
		return err == nil && n.TargetPowerState == ""
	})
	return n
}

func TestGophercloudNodeLifecycle(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 3})
	url := s.StartAPI(t, nil)
	c := bmClient(t, url, "1.95")
	ctx := context.Background()

	created, err := nodes.Create(ctx, c, nodes.CreateOpts{
		Name: "r1-n07", Driver: "redfish",
		DriverInfo: map[string]any{"redfish_address": s.RedfishURL, "redfish_system_id": s.Redfish.SystemPath("1"),
			"redfish_username": "admin", "redfish_password": testbed.RedfishPassword},
	}).Extract()
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.ProvisionState != node.Enroll || created.DriverInfo["redfish_password"] != node.Masked {
		t.Fatalf("created = %+v", created)
	}
	// Enroll, verify the BMC, make available.
	for _, target := range []nodes.TargetProvisionState{nodes.TargetManage, nodes.TargetProvide} {
		if err := nodes.ChangeProvisionState(ctx, c, "r1-n07", nodes.ProvisionStateOpts{Target: target}).ExtractErr(); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
	}
	got, err := nodes.Get(ctx, c, "r1-n07").Extract()
	if err != nil || got.ProvisionState != node.Available || got.PowerState != node.PowerOn {
		t.Fatalf("after manage+provide: %+v %v", got, err)
	}

	for _, step := range []struct {
		target nodes.TargetPowerState
		want   string
		hw     string
	}{
		{nodes.PowerOff, node.PowerOff, "Off"},
		{nodes.PowerOn, node.PowerOn, "On"},
		{nodes.Rebooting, node.PowerOn, "On"},
		{nodes.SoftPowerOff, node.PowerOff, "Off"},
		{nodes.SoftRebooting, node.PowerOn, "On"},
	} {
		if err := nodes.ChangePowerState(ctx, c, created.UUID, nodes.PowerStateOpts{Target: step.target}).ExtractErr(); err != nil {
			t.Fatalf("%s: %v", step.target, err)
		}
		n := waitIdle(t, c, created.UUID)
		if n.PowerState != step.want || n.LastError != "" || s.Redfish.PowerState("1") != step.hw {
			t.Fatalf("%s: power %q last_error %q hardware %s", step.target, n.PowerState, n.LastError, s.Redfish.PowerState("1"))
		}
	}

	// Patch: rename, add extra, change a driver_info key.
	patched, err := nodes.Update(ctx, c, created.UUID, nodes.UpdateOpts{
		nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: "/name", Value: "r1-n08"},
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/extra/rack", Value: "r1"},
		nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: "/driver_info/redfish_username", Value: "root"},
	}).Extract()
	if err != nil || patched.Name != "r1-n08" || patched.Extra["rack"] != "r1" || patched.DriverInfo["redfish_username"] != "root" {
		t.Fatalf("patch: %+v %v", patched, err)
	}
	if n := s.Node(t, created.UUID); n.DriverInfo["redfish_password"] != testbed.RedfishPassword {
		t.Fatal("a patch lost the real password")
	}

	// Maintenance.
	if err := nodes.SetMaintenance(ctx, c, "r1-n08", nodes.MaintenanceOpts{Reason: "fan"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if n, _ := nodes.Get(ctx, c, "r1-n08").Extract(); !n.Maintenance || n.MaintenanceReason != "fan" {
		t.Fatalf("maintenance = %v %q", n.Maintenance, n.MaintenanceReason)
	}
	if err := nodes.UnsetMaintenance(ctx, c, "r1-n08").ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if n, _ := nodes.Get(ctx, c, "r1-n08").Extract(); n.Maintenance || n.MaintenanceReason != "" {
		t.Fatalf("maintenance after unset = %v %q", n.Maintenance, n.MaintenanceReason)
	}

	if err := nodes.Delete(ctx, c, "r1-n08").ExtractErr(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = nodes.Get(ctx, c, "r1-n08").Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestGophercloudListFiltersAndPagination(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 8})
	url := s.StartAPI(t, nil)
	c := bmClient(t, url, "1.95")
	ctx := context.Background()
	inst := uuid.NewString()
	for i, id := range s.Redfish.SystemIDs() {
		instance := ""
		if i == 0 {
			instance = inst
		}
		n := s.AddRedfishNode(t, "n"+id, id, instance)
		if i%2 == 1 {
			n.Maintenance = true
			if err := s.Store.Update(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(opts nodes.ListOpts) int {
		total := 0
		err := nodes.List(c, opts).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
			ns, err := nodes.ExtractNodes(p)
			total += len(ns)
			return true, err
		})
		if err != nil {
			t.Fatalf("list %+v: %v", opts, err)
		}
		return total
	}
	tests := []struct {
		name string
		opts nodes.ListOpts
		want int
	}{
		{"all, pages of 3", nodes.ListOpts{Limit: 3}, 8},
		{"maintenance", nodes.ListOpts{Maintenance: true}, 4},
		{"provision state", nodes.ListOpts{ProvisionState: nodes.Active}, 1},
		{"instance", nodes.ListOpts{InstanceUUID: inst}, 1},
		{"associated", nodes.ListOpts{Associated: true}, 1},
		{"driver", nodes.ListOpts{Driver: "redfish"}, 8},
		{"sorted by uuid, pages of 2", nodes.ListOpts{Limit: 2, SortKey: "uuid", SortDir: "desc"}, 8},
	}
	for _, tt := range tests {
		if got := count(tt.opts); got != tt.want {
			t.Errorf("%s: %d nodes, want %d", tt.name, got, tt.want)
		}
	}
	// Detail and fields.
	var detailed []nodes.Node
	err := nodes.ListDetail(c, nodes.ListOpts{}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		ns, err := nodes.ExtractNodes(p)
		detailed = append(detailed, ns...)
		return true, err
	})
	if err != nil || len(detailed) != 8 || detailed[0].Driver != "redfish" || detailed[0].DriverInfo["redfish_password"] != node.Masked {
		t.Fatalf("detail: %d nodes, %v", len(detailed), err)
	}
}

func TestGophercloudErrorsCarryIronicStatus(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{TransitionDelay: 2 * time.Second})
	url := s.StartAPI(t, nil)
	c := bmClient(t, url, "1.95")
	ctx := context.Background()
	n := s.AddRedfishNode(t, "busy", "1", "")
	if err := nodes.ChangePowerState(ctx, c, n.UUID, nodes.PowerStateOpts{Target: nodes.PowerOff}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	err := nodes.ChangePowerState(ctx, c, n.UUID, nodes.PowerStateOpts{Target: nodes.PowerOn}).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Fatalf("second change while one runs: %v, want 409", err)
	}
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &unexpected) {
		t.Fatalf("error type %T", err)
	}
	waitIdle(t, c, n.UUID)
	_, err = nodes.Get(ctx, c, "no-such-node").Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
	_, err = nodes.Create(ctx, c, nodes.CreateOpts{Name: "bad", Driver: "ilo"}).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Fatalf("unknown driver: %v", err)
	}
}
