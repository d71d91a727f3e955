package itest

import (
	"context"
	"fmt"
	"strings"

	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"go.temporal.io/api/workflowservice/v1"
)

// ScanHistoriesForSecrets reads the full history of every workflow in the
// server's default namespace and fails if any secret appears in it, in
// inputs, results, failures, summaries, search attributes or heartbeats.
func ScanHistoriesForSecrets(srv *Server, secrets ...string) error {
	ctx := context.Background()
	c, err := devserver.Dial(ctx, srv.Address)
	if err != nil {
		return err
	}
	defer c.Close()
	var token []byte
	scanned := 0
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token})
		if err != nil {
			return fmt.Errorf("list workflows: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			id, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
			it := c.GetWorkflowHistory(ctx, id, run, false, 0)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					return fmt.Errorf("history of %s: %w", id, err)
				}
				text := ev.String()
				for _, s := range secrets {
					if strings.Contains(text, s) {
						return fmt.Errorf("a secret appears in the history of workflow %s (event %d, %s)", id, ev.GetEventId(), ev.GetEventType())
					}
				}
			}
			scanned++
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	fmt.Printf("scanned %d workflow histories: no secret found\n", scanned)
	return nil
}
