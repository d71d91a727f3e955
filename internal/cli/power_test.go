package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

var srv *itest.Server

func TestMain(m *testing.M) { os.Exit(itest.MustMain(m, &srv)) }

// cliEnv turns a stack's configuration into the environment the starter
// reads.
func cliEnv(s *itest.Stack) []string { return s.Env() }

func TestNodeLifecycleAndPowerThroughTheCLI(t *testing.T) {
	s := itest.NewStack(t, srv, itest.StackOptions{})
	env := cliEnv(s)
	b := s.IPMI.BMCs()[0]

	code, out, errOut := run(t, env, "node", "create", "--name", "r1-n07", "--driver", "ipmi",
		"--driver-info", "ipmi_address="+b.Host, "--driver-info", "ipmi_port="+strconv.Itoa(b.Port),
		"--driver-info", "ipmi_username=admin", "--driver-info", "ipmi_password="+testbed.IPMIPassword)
	if code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	var created struct {
		UUID           string         `json:"uuid"`
		ProvisionState string         `json:"provision_state"`
		DriverInfo     map[string]any `json:"driver_info"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create output is not JSON: %v\n%s", err, out)
	}
	if created.ProvisionState != node.Enroll || created.DriverInfo["ipmi_password"] != node.Masked {
		t.Fatalf("created = %+v", created)
	}

	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"node", "create", "--name", "r1-n07", "--driver", "ipmi", "--driver-info", "ipmi_address=x"}, 1, "name already in use"},
		{[]string{"node", "create", "--name", "bad", "--driver", "ilo"}, 1, "unknown driver"},
		{[]string{"node", "create", "--name", "bad", "--driver", "ipmi"}, 1, "missing driver_info"},
		{[]string{"node", "manage", "r1-n07"}, 0, "manageable, power state power on"},
		{[]string{"node", "list"}, 0, "r1-n07"},
		{[]string{"node", "show", "r1-n07"}, 0, `"ipmi_password": "******"`},
		{[]string{"node", "show", "nope"}, 1, "node not found"},
		{[]string{"power", "off", "r1-n07", "--wait"}, 0, `"power_state": "power off"`},
		{[]string{"power", "explode", "r1-n07"}, 2, "usage"},
		{[]string{"power", "on", "nope"}, 1, "node not found"},
		{[]string{"power", "on", "r1-n07", "--timeout", "-5"}, 1, "timeout -5"},
		{[]string{"power", "reboot", "r1-n07", "--wait"}, 0, `"power_state": "power on"`},
		{[]string{"power", "soft-off", "r1-n07", "--wait", "--timeout", "30"}, 0, `"power_state": "power off"`},
		{[]string{"power", "soft-reboot", "r1-n07", "--wait"}, 0, `"power_state": "power on"`},
		{[]string{"power", "on", "r1-n07"}, 0, "workflow node-power/" + created.UUID},
		{[]string{"node", "delete", "r1-n07"}, 0, "deleted node " + created.UUID},
	}
	for _, st := range steps {
		if st.args[0] == "node" && st.args[1] == "delete" {
			// Let the change started without --wait end first.
			itest.WaitFor(t, 30*time.Second, "the last power change", func() bool {
				d, err := s.Client.DescribeWorkflowExecution(context.Background(), "node-power/"+created.UUID, "")
				return err == nil && d.GetWorkflowExecutionInfo().GetCloseTime() != nil
			})
		}
		code, out, errOut := run(t, env, st.args...)
		if code != st.code || !strings.Contains(out+errOut, st.want) {
			t.Fatalf("starter %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", strings.Join(st.args, " "), code, st.code, out, errOut, st.want)
		}
		if strings.Contains(out+errOut, testbed.IPMIPassword) {
			t.Fatalf("starter %s printed the BMC password", strings.Join(st.args, " "))
		}
	}
}

func TestPowerWaitExitsNonZeroOnFailure(t *testing.T) {
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddIPMINode(t, "badpw", 0, "")
	n.DriverInfo["ipmi_password"] = "wrong-password"
	if err := s.Store.Update(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	for _, kv := range cliEnv(s) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	code := Main(context.Background(), []string{"power", "off", "badpw", "--wait"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "BMCAuthenticationFailed") {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
}
