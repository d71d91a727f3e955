package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
)

// NodeProvisionWorkflow is the registered name of NodeProvision.
const NodeProvisionWorkflow = "NodeProvision"

// NodeProvision runs a provision move that reads the node's BMC (manage,
// adopt) under the node's lock (workflow ID node-power/<uuid>) on a worker
// of the node's conductor group, the only ones that reach its BMC.
func NodeProvision(ctx workflow.Context, in activities.ProvisionInput) (activities.ProvisionResult, error) {
	opts := workflow.ActivityOptions{
		Summary: fmt.Sprintf("%s: read the power state", in.Action),
		// The read itself is bounded (15 s) but may wait for the IPMI
		// spacing first.
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3,
			NonRetryableErrorTypes: activities.NonRetryable},
	}
	var res activities.ProvisionResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), provisionActs.ProvisionNode, in).Get(ctx, &res)
	// Started on another group's queue (by hand): the read runs on the
	// node's group.
	return res, onNodeGroup(ctx, err, opts, &res, provisionActs.ProvisionNode, in)
}
