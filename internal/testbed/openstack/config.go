package openstack

import (
	"fmt"
	"os"

	"github.com/metalpower/metalpower/internal/testbed/keystone"
)

// auth is a section with which a service logs in to Keystone as user u
// in project service: its [keystone_authtoken] (keystonemiddleware) or a
// keystoneauth client section such as Nova's [placement], [neutron] and
// [ironic], which ignore www_authenticate_uri.
func (c *Cloud) auth(section string, u keystone.User) string {
	return fmt.Sprintf(`[%s]
www_authenticate_uri = %[2]s
auth_url = %[2]s
auth_type = password
username = %s
password = %s
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = RegionOne
`, section, c.K.URL, u.Name, u.Password)
}

func (c *Cloud) writeConfigs(opts Options) error {
	transport := "rabbit://guest:guest@127.0.0.1:5672/" + c.vhost
	if err := os.MkdirAll(c.path("placement"), 0o700); err != nil {
		return fmt.Errorf("openstack: %w", err)
	}
	for _, d := range []string{"images", "lock", "nova-state"} {
		if err := os.MkdirAll(c.path(d), 0o700); err != nil {
			return fmt.Errorf("openstack: %w", err)
		}
	}
	files := map[string]string{
		"placement/placement.conf": fmt.Sprintf(`[DEFAULT]
log_file = %s
[placement_database]
connection = %s
[api]
auth_strategy = keystone
`, c.LogFile("placement"), c.dbURL("placement")) + c.auth("keystone_authtoken", c.Placement),

		// ML2 with no type, network or mechanism in use and no agents:
		// Nova only reads (empty) port lists and security groups.
		"neutron.conf": fmt.Sprintf(`[DEFAULT]
log_file = %s
bind_host = 127.0.0.1
bind_port = %d
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = %s
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
[database]
connection = %s
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
[oslo_concurrency]
lock_path = %s
`, c.LogFile("neutron"), c.ports["neutron"], transport, c.dbURL("neutron"), c.path("lock")) + c.auth("keystone_authtoken", c.Neutron),

		"glance-api.conf": fmt.Sprintf(`[DEFAULT]
log_file = %s
bind_host = 127.0.0.1
bind_port = %d
workers = 1
enabled_backends = file:file
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = %s
[database]
connection = %s
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = %s
`, c.LogFile("glance"), c.ports["glance"], c.path("images"), c.dbURL("glance"), c.path("lock")) + c.auth("keystone_authtoken", c.Glance),
	}

	// One nova.conf for the API, the conductor and nova-manage; the
	// compute service's copy has no database sections (with them it logs
	// "No DB access allowed in nova-compute").
	common := fmt.Sprintf(`[DEFAULT]
transport_url = %s
host = %s
state_path = %s
compute_driver = ironic.IronicDriver
sync_power_state_interval = %d
update_resources_interval = %d
shutdown_timeout = %d
reserved_host_memory_mb = 0
osapi_compute_workers = 1
metadata_workers = 1
[conductor]
workers = 1
[scheduler]
workers = 1
[oslo_concurrency]
lock_path = %s
[glance]
region_name = RegionOne
[api]
auth_strategy = keystone
`, transport, c.Host, c.path("nova-state"), opts.SyncPowerStateInterval, opts.UpdateResourcesInterval,
		opts.ShutdownTimeout, c.path("lock")) +
		c.auth("keystone_authtoken", c.K.Nova) +
		c.auth("placement", c.K.Nova) +
		c.auth("neutron", c.K.Nova) +
		// No endpoint_override: the baremetal endpoint comes from the
		// catalog, as in a cloud.
		c.auth("ironic", c.Ironic)
	databases := fmt.Sprintf(`[api_database]
connection = %s
[database]
connection = %s
`, c.dbURL("nova_api"), c.dbURL("nova"))
	files["nova.conf"] = common + databases
	files["nova-compute.conf"] = common
	c.NovaConf = c.path("nova.conf")

	for name, text := range files {
		if err := os.WriteFile(c.path(name), []byte(text), 0o600); err != nil {
			return fmt.Errorf("openstack: %w", err)
		}
	}
	return nil
}
