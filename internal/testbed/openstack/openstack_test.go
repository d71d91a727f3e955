package openstack

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/testbed/keystone"
)

// TestLaunch: the cloud comes up behind a real Keystone, nova-compute
// reports up with the ironic driver, and Close removes the databases.
func TestLaunch(t *testing.T) {
	k := keystone.Start(t)
	c := Start(t, k, Options{SyncPowerStateInterval: 10})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := k.OpenStack(ctx, "compute", "service", "list", "-f", "value", "-c", "Binary", "-c", "Host", "-c", "State")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nova-conductor", "nova-compute " + c.Host + " up"} {
		if !strings.Contains(out, want) {
			t.Errorf("compute service list lacks %q:\n%s", want, out)
		}
	}
}
