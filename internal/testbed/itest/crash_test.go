package itest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/workflows"
)

type workerProcess struct {
	cmd *exec.Cmd
	out *itest.LogBuffer
}

func startWorkerProcess(t *testing.T, bin string, s *itest.Stack) *workerProcess {
	t.Helper()
	p := &workerProcess{cmd: exec.Command(bin), out: &itest.LogBuffer{}}
	p.cmd.Env = append(os.Environ(), s.Env()...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	s.WaitForWorker(t, "")
	return p
}

// TestWorkerKilledBetweenSetAndVerify kills the worker process with SIGKILL
// while it waits for the hardware to reach the state; a new worker finishes
// the change with the right state and exactly one Nova notification.
func TestWorkerKilledBetweenSetAndVerify(t *testing.T) {
	t.Parallel()
	bin := itest.BuildCommand(t, "worker")
	s := itest.NewStack(t, srv, itest.StackOptions{NoWorker: true, TransitionDelay: 4 * time.Second})
	inst := uuid.NewString()
	n := s.AddRedfishNode(t, "crash", "1", inst)
	first := startWorkerProcess(t, bin, s)

	ctx := context.Background()
	run, err := s.Start(ctx, t, n.Name, node.PowerOff, 60)
	if err != nil {
		t.Fatal(err)
	}
	itest.WaitFor(t, 30*time.Second, "the change to be verifying", func() bool {
		v, err := s.Client.QueryWorkflow(ctx, dispatch.LockID(n.UUID), "", "status")
		var st workflows.Status
		return err == nil && v.Get(&st) == nil && strings.HasPrefix(st.Step, "verifying")
	})
	if got := s.Redfish.Resets("1"); len(got) != 1 {
		t.Fatalf("resets before the kill = %v", got)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.cmd.Wait()

	startWorkerProcess(t, bin, s)
	var res workflows.PowerChangeResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("the change did not complete after the restart: %v", err)
	}
	if res.PowerState != node.PowerOff || s.Redfish.PowerState("1") != "Off" {
		t.Fatalf("result %+v, hardware %s", res, s.Redfish.PowerState("1"))
	}
	if got := s.Node(t, n.UUID); got.PowerState != node.PowerOff || got.TargetPowerState != "" {
		t.Fatalf("node = %q / %q", got.PowerState, got.TargetPowerState)
	}
	if got := s.Redfish.Resets("1"); len(got) != 1 {
		t.Fatalf("resets = %v: the power action was sent again", got)
	}
	itest.WaitFor(t, 20*time.Second, "the Nova event", func() bool { return len(s.NovaTags(inst)) > 0 })
	time.Sleep(time.Second)
	if tags := s.NovaTags(inst); len(tags) != 1 || tags[0] != "POWER_OFF" {
		t.Fatalf("Nova events = %v, want exactly one POWER_OFF", tags)
	}
}

// TestWorkerStopsGracefullyOnSIGTERM: SIGTERM ends the worker promptly and
// cleanly.
func TestWorkerStopsGracefullyOnSIGTERM(t *testing.T) {
	t.Parallel()
	bin := itest.BuildCommand(t, "worker")
	s := itest.NewStack(t, srv, itest.StackOptions{NoWorker: true})
	p := startWorkerProcess(t, bin, s)
	itest.WaitFor(t, 20*time.Second, "the worker to start", func() bool { return strings.Contains(p.out.String(), "worker started") })
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("worker exit: %v\n%s", err, p.out.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stopping took %v", d)
	}
	if !strings.Contains(p.out.String(), "stopping") {
		t.Fatalf("no stop message:\n%s", p.out.String())
	}
}
