package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/metalpower/metalpower/internal/testbed/keystone"
)

// cloud is the demo's Keystone (-keystone): the API runs with
// auth_strategy keystone behind it, registered in its catalog as the
// baremetal service, and the demo enrolls as its system admin.
type cloud struct {
	k      *keystone.Keystone
	openrc string

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// startKeystone runs Keystone for the demo, in a directory of the data
// directory that it removes when it stops, and writes an openrc of the
// system admin.
func (d *demo) startKeystone(ctx context.Context) error {
	dir, err := os.MkdirTemp(d.opts.DataDir, "keystone-")
	if err != nil {
		return err
	}
	d.printf("starting Keystone (about 20 s)...\n")
	k, err := keystone.Launch(ctx, dir, 0)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	d.keystone = &cloud{k: k, openrc: filepath.Join(d.opts.DataDir, "keystone-openrc")}
	api := "http://" + hostPort(d.opts.APIPort)
	// With -openstack the cloud lists the API itself, before Nova starts.
	if !d.opts.OpenStack {
		if _, err := k.Script(ctx, "service create --name ironic baremetal\nendpoint create --region RegionOne baremetal public "+api+
			"\nendpoint create --region RegionOne baremetal internal "+api+"\n"); err != nil {
			return err
		}
	}
	openrc := fmt.Sprintf("export OS_AUTH_URL=%s OS_USERNAME=admin OS_PASSWORD=%s OS_USER_DOMAIN_NAME=Default OS_SYSTEM_SCOPE=all OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne OS_INTERFACE=public\nunset OS_PROJECT_NAME OS_PROJECT_DOMAIN_NAME OS_CLOUD OS_ENDPOINT\n",
		k.URL, k.AdminPassword)
	return os.WriteFile(d.keystone.openrc, []byte(openrc), 0o600)
}

// stopKeystone stops Keystone and removes its database, files and openrc.
func (d *demo) stopKeystone() error {
	if d.keystone == nil {
		return nil
	}
	err := d.keystone.k.Close()
	os.RemoveAll(d.keystone.k.Dir)
	os.Remove(d.keystone.openrc)
	return err
}

// keystoneEnv configures the API to validate tokens with the demo's
// Keystone as the metalpower service user.
func (d *demo) keystoneEnv() []string {
	if d.keystone == nil {
		return nil
	}
	k := d.keystone.k
	return []string{"METALPOWER_API_AUTH_STRATEGY=keystone",
		"METALPOWER_KEYSTONE_AUTHTOKEN_AUTH_URL=" + k.URL,
		"METALPOWER_KEYSTONE_AUTHTOKEN_USERNAME=" + k.Metalpower.Name,
		"METALPOWER_KEYSTONE_AUTHTOKEN_PASSWORD=" + k.Metalpower.Password,
		"METALPOWER_KEYSTONE_AUTHTOKEN_PROJECT_NAME=" + k.ServiceProject}
}

// adminToken is a system-scoped token of the admin, renewed well before
// Keystone's default one-hour expiry.
func (c *cloud) adminToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.renewAt) {
		return c.token, nil
	}
	tok, err := c.k.Token(ctx, keystone.User{Name: "admin", Password: c.k.AdminPassword}, "")
	if err != nil {
		return "", err
	}
	c.token, c.renewAt = tok, time.Now().Add(30*time.Minute)
	return tok, nil
}
