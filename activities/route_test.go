package activities_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/node"
)

// TestWorkersReachOnlyTheirGroupsBMCs: a worker asked to reach the BMC of
// a node of another conductor group refuses before touching it, naming
// the node's group's queue, and counts nothing against the node; its own
// group's nodes are served. Group names are case-insensitive.
func TestWorkersReachOnlyTheirGroupsBMCs(t *testing.T) {
	for _, tt := range []struct {
		name  string
		group string
		want  string // the queue named in the refusal; "" when served
	}{
		{"own group", "", ""},
		{"another group", "segment-b", "metalpower.segment-b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, conductor())
			n := f.addNode(func(n *node.Node) {
				n.ConductorGroup, n.PowerState, n.ProvisionState = tt.group, node.PowerOff, node.Manageable
			})
			f.bmcs.on(n.UUID, on())
			env := newActivityEnv(f)
			calls := []struct {
				name string
				run  func() error
			}{
				{"SetPowerState", func() error {
					_, err := env.ExecuteActivity(f.power.SetPowerState, activities.SetPowerInput{NodeUUID: n.UUID, Target: node.PowerOff})
					return err
				}},
				{"SyncNode", func() error { _, err := env.ExecuteLocalActivity(f.nodeSync.SyncNode, n.UUID); return err }},
				{"ProvisionNode", func() error {
					_, err := env.ExecuteActivity(f.provision.ProvisionNode, activities.ProvisionInput{Node: n.UUID, Action: node.ActionAdopt})
					return err
				}},
			}
			for _, c := range calls {
				err := c.run()
				m, refused := activities.AsMisrouted(err)
				if tt.want == "" {
					if refused {
						t.Fatalf("%s refused a node of its own group: %v", c.name, err)
					}
					continue
				}
				if !refused || m.Queue != tt.want || m.Driver != ipmi.Name {
					t.Fatalf("%s = %v, want the refusal naming %s", c.name, err, tt.want)
				}
				var app *temporal.ApplicationError
				if !errors.As(err, &app) || !app.NonRetryable() {
					t.Fatalf("%s: the refusal is retryable: %v", c.name, err)
				}
			}
			if tt.want != "" {
				if len(f.bmcs.reads) != 0 || len(f.bmcs.sets) != 0 {
					t.Fatalf("the BMC of a node of another group was reached: reads %v, sets %v", f.bmcs.reads, f.bmcs.sets)
				}
				if got := f.get(n.UUID); got.SyncFailures != 0 || got.LastError != "" || got.ProvisionState != node.Manageable {
					t.Fatalf("the refusal changed the node: failures %d, last_error %q, state %q", got.SyncFailures, got.LastError, got.ProvisionState)
				}
			}
		})
	}
}

// TestPlanNamesTheNodesGroupAndWhetherItIsServed: PreparePowerChange
// routes the change to the node's group's queue, asking Temporal whether
// a live worker polls it only when it is another group's.
func TestPlanNamesTheNodesGroupAndWhetherItIsServed(t *testing.T) {
	for _, tt := range []struct {
		name         string
		group        string
		pollers      bool
		wantQueue    string
		wantUnserved bool
	}{
		{"own group, not asked", "", false, "metalpower", false},
		{"a served group", "rack-live", true, "metalpower.rack-live", false},
		{"a group nobody serves", "rack-dead", false, "metalpower.rack-dead", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, conductor())
			n := f.addNode(func(n *node.Node) { n.ConductorGroup = tt.group })
			if tt.group != "" {
				resp := &workflowservice.DescribeTaskQueueResponse{}
				if tt.pollers {
					resp = livePollers()
				}
				f.nova.On("DescribeTaskQueue", mock.Anything, tt.wantQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW).Return(resp, nil).Once()
			}
			v, err := newActivityEnv(f).ExecuteLocalActivity(f.power.PreparePowerChange, activities.PrepareInput{Node: n.UUID, Target: node.PowerOff})
			if err != nil {
				t.Fatal(err)
			}
			var p activities.PowerPlan
			if err := v.Get(&p); err != nil {
				t.Fatal(err)
			}
			if p.Queue != tt.wantQueue || p.Group != tt.group || p.Unserved != tt.wantUnserved {
				t.Fatalf("plan queue %q group %q unserved %v", p.Queue, p.Group, p.Unserved)
			}
		})
	}
}

// livePollers is a queue polled just now.
func livePollers() *workflowservice.DescribeTaskQueueResponse {
	return &workflowservice.DescribeTaskQueueResponse{Pollers: []*taskqueuepb.PollerInfo{{LastAccessTime: timestamppb.Now()}}}
}
