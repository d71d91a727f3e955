package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/api"
	"github.com/metalpower/metalpower/internal/cli"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/keystone"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/baremetal"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	ks "github.com/metalpower/metalpower/internal/testbed/keystone"
	"github.com/metalpower/metalpower/internal/testbed/sim/openipmi"
)

// cloud is a real Keystone with the users of Ironic's RBAC tests, and
// the API behind it twice: with rbac_service_role_elevated_access off
// (and a short token cache, to see revocations) and on.
type cloud struct {
	k                 *ks.Keystone
	stack             *itest.Stack
	api, elevated     string
	strict, elevatedV *keystone.Validator
	// Users: a system admin and reader, a member of project tenant-a, a
	// service user in project service.
	sysadmin, sysreader, alice, conductor ks.User
	tenantA                               string // project ID
	secrets                               []string
}

func startCloud(t *testing.T) *cloud {
	t.Helper()
	k := ks.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pw := func() string { return "pw-" + uuid.NewString() }
	c := &cloud{k: k, sysadmin: ks.User{Name: "sysadmin", Password: pw()}, sysreader: ks.User{Name: "sysreader", Password: pw()},
		alice: ks.User{Name: "alice", Password: pw()}, conductor: ks.User{Name: "conductor", Password: pw()}}
	script := "project create --domain default tenant-a\n"
	for _, u := range []ks.User{c.sysadmin, c.sysreader, c.alice, c.conductor} {
		script += fmt.Sprintf("user create --domain default --password %s %s\n", u.Password, u.Name)
		c.secrets = append(c.secrets, u.Password)
	}
	script += "role add --system all --user sysadmin admin\nrole add --system all --user sysreader reader\n" +
		"role add --project tenant-a --user alice member\nrole add --project service --user conductor service\n"
	if _, err := k.Script(ctx, script); err != nil {
		t.Fatal(err)
	}
	out, err := k.OpenStack(ctx, "project", "show", "tenant-a", "-f", "value", "-c", "id")
	if err != nil {
		t.Fatal(err)
	}
	c.tenantA = strings.TrimSpace(out)
	c.secrets = append(c.secrets, k.AdminPassword, k.Metalpower.Password)

	c.stack = itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 2, IPMIBMCs: 1})
	c.strict, c.elevatedV = newValidator(t, k, 2), newValidator(t, k, 300)
	c.api = c.stack.StartAPIServer(t, &api.Server{Auth: c.strict, Policy: policy.Config{ServiceProjectName: "service"}})
	c.elevated = c.stack.StartAPIServer(t, &api.Server{Auth: c.elevatedV,
		Policy: policy.Config{ServiceRoleElevatedAccess: true, ServiceProjectName: "service"}})
	return c
}

// newValidator validates tokens as the metalpower service user does.
func newValidator(t testing.TB, k *ks.Keystone, cacheTime int) *keystone.Validator {
	t.Helper()
	v, err := keystone.FromConfig(config.KeystoneAuthtoken{AuthURL: k.URL, AuthType: "password",
		Username: k.Metalpower.Name, Password: k.Metalpower.Password, ProjectName: k.ServiceProject,
		UserDomainName: "Default", ProjectDomainName: "Default", Interface: "internal",
		TokenCacheTime: cacheTime, HTTPConnectTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (c *cloud) token(t *testing.T, u ks.User, project string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := c.k.Token(ctx, u, project)
	if err != nil {
		t.Fatal(err)
	}
	c.secrets = append(c.secrets, tok)
	return tok
}

// call makes one API request with token (none when "") at 1.95.
func call(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	return send(t, method, url, "1.95", token, body)
}

// TestKeystoneAuthentication: discovery is public; no token, a malformed,
// an unknown and a revoked token are 401 with keystonemiddleware's
// challenge; a token costs one Keystone request per cache period;
// Keystone going away is 503, cached tokens keep working, and the API
// recovers by itself when Keystone is back.
func TestKeystoneAuthentication(t *testing.T) {
	c := startCloud(t)
	for _, path := range []string{"/", "/v1", "/v1/"} {
		if status, _, body := call(t, http.MethodGet, c.api+path, "", ""); status != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s", path, status, body)
		}
	}
	wantChallenge := fmt.Sprintf("Keystone uri=%q", c.k.URL)
	unauthorized := func(name, token string) {
		t.Helper()
		status, h, body := call(t, http.MethodGet, c.api+"/v1/nodes", token, "")
		if status != http.StatusUnauthorized || h.Get("WWW-Authenticate") != wantChallenge ||
			ironicFault(t, body) != "The request you have made requires authentication." {
			t.Errorf("%s: %d, WWW-Authenticate %q, %s; want 401 with %q", name, status, h.Get("WWW-Authenticate"), body, wantChallenge)
		}
	}
	unauthorized("no token", "")
	unauthorized("malformed token", "not a token")
	unauthorized("unknown token", "gAAAAABbogus-token-that-keystone-never-issued")

	// Revoked: refused at the latest once the cache time (2 s) passed.
	tok := c.token(t, c.alice, "tenant-a")
	if status, _, body := call(t, http.MethodGet, c.api+"/v1/nodes", tok, ""); status != http.StatusOK {
		t.Fatalf("alice's token: %d %s", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.k.OpenStack(ctx, "token", "revoke", tok); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	time.Sleep(2 * time.Second)
	unauthorized("revoked token, cache time passed", tok)
	t.Logf("revoked token refused %s after its revocation", time.Since(revoked).Round(time.Millisecond))

	// One Keystone request per token per cache period (300 s here).
	reader := c.token(t, c.sysreader, "")
	before := c.elevatedV.Requests()
	for range 10 {
		if status, _, body := call(t, http.MethodGet, c.elevated+"/v1/nodes", reader, ""); status != http.StatusOK {
			t.Fatalf("system reader lists nodes: %d %s", status, body)
		}
	}
	if n := c.elevatedV.Requests() - before; n != 1 {
		t.Errorf("10 requests with one token cost %d Keystone requests, want 1", n)
	}

	// Keystone stops: a token not seen before gets 503, a cached one
	// still works; Keystone back, the new token works, with no restart.
	fresh := c.token(t, c.sysadmin, "")
	c.k.Stop()
	status, _, body := call(t, http.MethodGet, c.elevated+"/v1/nodes", fresh, "")
	if status != http.StatusServiceUnavailable || !strings.Contains(ironicFault(t, body), "Keystone is unavailable") {
		t.Errorf("Keystone down, new token: %d %s; want 503 saying Keystone is unavailable", status, body)
	}
	if status, _, body := call(t, http.MethodGet, c.elevated+"/v1/nodes", reader, ""); status != http.StatusOK {
		t.Errorf("Keystone down, cached token: %d %s; want 200", status, body)
	}
	if err := c.k.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if status, _, body := call(t, http.MethodGet, c.elevated+"/v1/nodes", fresh, ""); status != http.StatusOK {
		t.Errorf("Keystone back, new token: %d %s; want 200", status, body)
	}
	c.noSecretsShown(t)
}

// TestKeystonePolicy: the baremetal CLI with password auth and system
// scope, finding the API in Keystone's catalog, enrols, manages and
// powers off a node on Debian's ipmi_sim; a system reader may read but
// not change power (403, the BMC untouched); the service user changes
// power only with elevated access; a project member sees only the node
// its project owns.
func TestKeystonePolicy(t *testing.T) {
	c := startCloud(t)
	requireIpmitool(t)
	f, err := openipmi.Start(context.Background(), openipmi.Options{BMCs: 1, Password: testbed.IPMIPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	bmc := f.BMCs()[0]

	// The API as the cloud's baremetal endpoint, behind the CLI's
	// logging proxy.
	cli := baremetal.New(t, c.api, "1.95")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := c.k.Script(ctx, "service create --name ironic baremetal\nendpoint create --region RegionOne baremetal public "+cli.Endpoint+"\n"); err != nil {
		t.Fatal(err)
	}
	cli.Auth = []string{"--os-auth-type", "password", "--os-auth-url", c.k.URL, "--os-username", c.sysadmin.Name,
		"--os-password", c.sysadmin.Password, "--os-user-domain-name", "Default", "--os-system-scope", "all",
		"--os-interface", "public", "--os-region-name", "RegionOne"}
	cli.OK("node", "create", "--driver", "ipmi", "--name", "ks-ipmi",
		"--driver-info", "ipmi_address="+bmc.Host, "--driver-info", "ipmi_port="+strconv.Itoa(bmc.Port),
		"--driver-info", "ipmi_username=admin", "--driver-info", "ipmi_password="+testbed.IPMIPassword)
	cli.OK("node", "manage", "ks-ipmi", "--wait", "60")
	cli.OK("node", "power", "off", "ks-ipmi", "--power-timeout", "60")
	if got := ipmitoolPower(t, bmc); got != "off" {
		t.Fatalf("ipmitool after `baremetal node power off`: %s", got)
	}
	if got := cli.Show("ks-ipmi", "power_state", "provision_state"); !equalJSON(got, map[string]any{
		"power_state": node.PowerOff, "provision_state": node.Manageable}) {
		t.Errorf("node show = %v", got)
	}

	// A system reader reads, and may not change power.
	reader := c.token(t, c.sysreader, "")
	if status, _, body := call(t, http.MethodGet, c.api+"/v1/nodes/ks-ipmi", reader, ""); status != http.StatusOK {
		t.Errorf("system reader GET node: %d %s", status, body)
	}
	status, _, body := call(t, http.MethodPut, c.api+"/v1/nodes/ks-ipmi/states/power", reader, `{"target": "power on"}`)
	if status != http.StatusForbidden || ironicFault(t, body) != "Access was denied to the following resource: baremetal:node:set_power_state" {
		t.Errorf("system reader power on: %d %s; want 403", status, body)
	}
	time.Sleep(time.Second) // a change wrongly started would have reached the BMC by now
	if got := ipmitoolPower(t, bmc); got != "off" {
		t.Errorf("ipmitool after the refused power on: %s; the BMC was touched", got)
	}
	if n := c.stack.Node(t, "ks-ipmi"); n.TargetPowerState != "" || n.PowerState != node.PowerOff {
		t.Errorf("node after the refused power on: power %q, target %q", n.PowerState, n.TargetPowerState)
	}

	// The service user in project service: hidden without elevated
	// access, powers on with it.
	svc := c.token(t, c.conductor, "service")
	if status, _, body := call(t, http.MethodPut, c.api+"/v1/nodes/ks-ipmi/states/power", svc, `{"target": "power on"}`); status != http.StatusNotFound {
		t.Errorf("service user without elevated access: %d %s; want 404", status, body)
	}
	if status, _, body := call(t, http.MethodPut, c.elevated+"/v1/nodes/ks-ipmi/states/power", svc, `{"target": "power on"}`); status != http.StatusAccepted {
		t.Fatalf("service user with elevated access: %d %s; want 202", status, body)
	}
	waitPower(t, c.stack, "ks-ipmi", node.PowerOn)
	if got := ipmitoolPower(t, bmc); got != "on" {
		t.Errorf("ipmitool after the service user's power on: %s", got)
	}

	// Project tenant-a owns one node (owner set through the API at 1.50);
	// alice, its member, lists only that one and cannot see the other.
	c.stack.AddRedfishNode(t, "ks-owned", "1", "")
	c.stack.AddRedfishNode(t, "ks-other", "2", "")
	admin := c.token(t, c.sysadmin, "")
	if status, _, body := call(t, http.MethodPatch, c.api+"/v1/nodes/ks-owned", admin,
		`[{"op": "add", "path": "/owner", "value": "`+c.tenantA+`"}]`); status != http.StatusOK {
		t.Fatalf("set owner: %d %s", status, body)
	}
	alice := c.token(t, c.alice, "tenant-a")
	status, _, body = call(t, http.MethodGet, c.api+"/v1/nodes?fields=name,owner", alice, "")
	if status != http.StatusOK || listedNames(t, body) != "ks-owned" {
		t.Errorf("alice lists: %d %s; want ks-owned only", status, body)
	}
	if status, _, body := call(t, http.MethodGet, c.api+"/v1/nodes/ks-other", alice, ""); status != http.StatusNotFound {
		t.Errorf("alice GET another project's node: %d %s; want 404", status, body)
	}
	if status, _, body := call(t, http.MethodPatch, c.api+"/v1/nodes/ks-owned", alice,
		`[{"op": "replace", "path": "/owner", "value": "someone-else"}]`); status != http.StatusForbidden {
		t.Errorf("alice changes her node's owner: %d %s; want 403", status, body)
	}
	status, _, body = call(t, http.MethodGet, c.api+"/v1/nodes?owner="+c.tenantA+"&fields=name", admin, "")
	if status != http.StatusOK || listedNames(t, body) != "ks-owned" {
		t.Errorf("system admin lists ?owner=: %d %s", status, body)
	}

	// The project's own CLI: alice through the OS_* variables, the system
	// admin through clouds.yaml; both find the API in the catalog.
	for _, v := range []string{"OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_ENDPOINT", "OS_AUTH_TYPE", "OS_SYSTEM_SCOPE",
		"OS_PROJECT_ID", "OS_DOMAIN_NAME", "OS_TENANT_NAME"} {
		t.Setenv(v, "")
	}
	for k, v := range map[string]string{"OS_AUTH_URL": c.k.URL, "OS_USERNAME": c.alice.Name, "OS_PASSWORD": c.alice.Password,
		"OS_PROJECT_NAME": "tenant-a", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
		"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public"} {
		t.Setenv(k, v)
	}
	out, errOut := starter(t, 0, "remote", "node", "list")
	if !strings.Contains(out, "ks-owned") || strings.Contains(out, "ks-other") || strings.Contains(out, "ks-ipmi") {
		t.Errorf("starter remote node list as alice:\n%s%s", out, errOut)
	}
	_, errOut = starter(t, 1, "remote", "power", "off", "ks-other")
	if !strings.Contains(errOut, "Node ks-other could not be found. (HTTP 404)") {
		t.Errorf("alice powers off another project's node: %s", errOut)
	}
	t.Setenv("OS_PASSWORD", "wrong")
	if _, errOut = starter(t, 1, "remote", "node", "list"); !strings.Contains(errOut, "refused the credentials") || strings.Contains(errOut, "wrong") {
		t.Errorf("wrong password: %s", errOut)
	}
	t.Setenv("OS_AUTH_URL", "")
	cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
	os.WriteFile(cloudsYAML, []byte(fmt.Sprintf(`clouds:
  metal:
    auth:
      auth_url: %s
      username: %s
      password: %s
      user_domain_name: Default
      system_scope: all
    region_name: RegionOne
    interface: public
`, c.k.URL, c.sysadmin.Name, c.sysadmin.Password)), 0o600)
	t.Setenv("OS_CLIENT_CONFIG_FILE", cloudsYAML)
	t.Setenv("OS_CLOUD", "metal")
	if out, errOut := starter(t, 0, "remote", "power", "off", "ks-ipmi"); !strings.Contains(out, "power off requested for ks-ipmi") {
		t.Errorf("starter remote power off: %s%s", out, errOut)
	}
	waitPower(t, c.stack, "ks-ipmi", node.PowerOff)
	if got := ipmitoolPower(t, bmc); got != "off" {
		t.Errorf("ipmitool after `starter remote power off`: %s", got)
	}

	// Leased to tenant-a, ks-other shows alice neither its BMC nor its
	// last error, as Ironic's node_sanitize; the node it owns shows both,
	// and a system admin's list of the project is not redacted.
	if status, _, body := call(t, http.MethodPatch, c.api+"/v1/nodes/ks-other", admin,
		`[{"op": "add", "path": "/lessee", "value": "`+c.tenantA+`"}]`); status != http.StatusOK {
		t.Fatalf("set lessee: %d %s", status, body)
	}
	redactedInfo := map[string]any{"content": "** Redacted - requires baremetal:node:get:driver_info permission. **"}
	const redactedError = "** Value Redacted - Requires baremetal:node:get:last_error permission. **"
	for _, tt := range []struct {
		url, token string
		redacted   map[string]bool // by node name
	}{
		{"/v1/nodes/detail", alice, map[string]bool{"ks-owned": false, "ks-other": true}},
		{"/v1/nodes/detail?project=" + c.tenantA, admin, map[string]bool{"ks-owned": false, "ks-other": false}},
		{"/v1/nodes/ks-other", alice, map[string]bool{"ks-other": true}},
		{"/v1/nodes/ks-owned", alice, map[string]bool{"ks-owned": false}},
		{"/v1/nodes/ks-other?fields=name,last_error", alice, map[string]bool{"ks-other": true}},
	} {
		status, _, body := call(t, http.MethodGet, c.api+tt.url, tt.token, "")
		var page struct{ Nodes []map[string]any }
		if strings.Contains(tt.url, "/detail") {
			json.Unmarshal([]byte(body), &page)
		} else {
			var n map[string]any
			json.Unmarshal([]byte(body), &n)
			page.Nodes = append(page.Nodes, n)
		}
		if status != http.StatusOK || len(page.Nodes) != len(tt.redacted) {
			t.Errorf("GET %s: %d %s", tt.url, status, body)
			continue
		}
		for _, n := range page.Nodes {
			name, _ := n["name"].(string)
			redacted, listed := tt.redacted[name]
			info, hasInfo := n["driver_info"].(map[string]any)
			switch {
			case !listed:
				t.Errorf("GET %s listed %s", tt.url, name)
			case redacted && n["last_error"] != redactedError:
				t.Errorf("GET %s: %s's last_error %v, want it redacted", tt.url, name, n["last_error"])
			case redacted && hasInfo && !equalJSON(info, redactedInfo):
				t.Errorf("GET %s: %s's driver_info %v, want it redacted", tt.url, name, n["driver_info"])
			case !redacted && (n["last_error"] == redactedError || equalJSON(info, redactedInfo)):
				t.Errorf("GET %s: %s redacted: %v", tt.url, name, n)
			}
		}
	}

	c.noSecretsShown(t)
	for _, entry := range strings.Split(cli.Log.String(), "\n") {
		if _, answer, _ := strings.Cut(entry, " -> "); strings.Contains(answer, testbed.IPMIPassword) {
			t.Errorf("an API response showed the BMC password: %s", entry)
		}
	}
}

// noSecretsShown checks that no password or token reached the API's log
// or any workflow history.
func (c *cloud) noSecretsShown(t *testing.T) {
	t.Helper()
	log := c.stack.Log.String()
	for _, s := range c.secrets {
		if strings.Contains(log, s) {
			t.Errorf("the log holds a password or token (%.8s...)", s)
		}
	}
	if err := itest.ScanHistoriesForSecrets(srv, c.secrets...); err != nil {
		t.Error(err)
	}
}

// starter runs the project's CLI in this process and wants exit code.
func starter(t *testing.T, code int, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got := cli.Main(ctx, args, &out, &errOut); got != code {
		t.Errorf("starter %s: exit %d, want %d\n%s%s", strings.Join(args, " "), got, code, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

func listedNames(t *testing.T, body string) string {
	t.Helper()
	var page struct {
		Nodes []struct {
			Name string `json:"name"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var names []string
	for _, n := range page.Nodes {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

func requireIpmitool(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Fatalf("ipmitool is missing (`make deps` installs it): %v", err)
	}
}

// ipmitoolPower asks the BMC itself: "on" or "off".
func ipmitoolPower(t *testing.T, b openipmi.BMC) string {
	t.Helper()
	got, err := b.Power(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func waitPower(t *testing.T, s *itest.Stack, ident, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := s.Node(t, ident)
		if n.PowerState == want && n.TargetPowerState == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: power %q target %q last_error %q; want %q", ident, n.PowerState, n.TargetPowerState, n.LastError, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
