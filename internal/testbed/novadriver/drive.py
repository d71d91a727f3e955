"""Drive Nova's ironic virt driver (nova.virt.ironic.driver.IronicDriver,
Debian's python3-nova) against metalpower's REST API.

Run by novadriver_test.go with Debian's python3. The driver is Nova's own
code, imported, not copied: every call it makes to Ironic goes over HTTP
to the endpoint given with --api. Only Nova-internal plumbing backed by
Nova's database is stubbed: the compute-service list used for the hash
ring (ServiceList.get_all_computes_by_hv_type) and the instances on this
host (InstanceList.get_uuids_by_host).

Protocol: one command per line on stdin, one JSON object per line on
stdout (the original stdout; anything else printed goes to stderr with
the logs). Commands:

  nodes                  get_available_nodes() (refreshes the node cache)
                         and list_instance_uuids()
  info                   get_info() fresh from Ironic, then again from the
                         cache after a refresh, plus instance_exists()
  power_off              power_off(instance)            (hard)
  soft_power_off         power_off(instance, timeout=T) (soft first)
  power_on               power_on(...)
  reboot                 reboot(..., 'HARD')
  soft_reboot            reboot(..., 'SOFT')
  resources              what the resource tracker does for every node of
                         get_available_nodes(): get_available_resource()
                         then update_provider_tree() on a ProviderTree;
                         then update_provider_tree() again for the node
                         taken out of the cache (read by itself)
  quit

Each answer is {"cmd": ..., "ok": true, ...} or {"cmd": ..., "ok": false,
"error": ..., "traceback": ...}. A command that does not finish within
--step-timeout seconds (Nova's power waits poll without a limit) makes the
script answer {"ok": false, "error": "timeout ..."} and exit 3.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import traceback


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument('--api', required=True, help='Ironic endpoint, http://host:port')
    p.add_argument('--instance', required=True, help='instance UUID')
    p.add_argument('--node', required=True, help="the instance's node UUID")
    p.add_argument('--host', default='compute-1', help='nova-compute host name')
    p.add_argument('--retry-interval', type=int, default=1,
                   help='[ironic] api_retry_interval: seconds between polls')
    p.add_argument('--soft-timeout', type=int, default=30,
                   help='timeout of the soft power off')
    p.add_argument('--step-timeout', type=int, default=60)
    p.add_argument('--state-dir', default=None)
    return p.parse_args()


def main():
    args = parse_args()

    # The protocol keeps the real stdout; everything else (prints, logs,
    # warnings) goes to stderr.
    proto = os.fdopen(os.dup(1), 'w', buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(obj):
        proto.write(json.dumps(obj, sort_keys=True, default=str) + '\n')
        proto.flush()

    state_dir = args.state_dir or tempfile.mkdtemp(prefix='novadriver-')
    conf_path = os.path.join(state_dir, 'nova.conf')
    with open(conf_path, 'w') as f:
        f.write('\n'.join([
            '[DEFAULT]',
            'host = %s' % args.host,
            'state_path = %s' % state_dir,
            'debug = true',
            'use_stderr = true',
            # keystoneauth logs every request and answer (both clients
            # use it): what a failure report needs. Lock chatter is not.
            'default_log_levels = keystoneauth=DEBUG,ironicclient=DEBUG,'
            'openstack=INFO,oslo_concurrency=WARN,stevedore=WARN,'
            'urllib3=WARN,iso8601=WARN',
            '[oslo_concurrency]',
            'lock_path = %s' % state_dir,
            '[ironic]',
            # No Keystone: keystoneauth's "none" plugin, the endpoint given
            # directly. Used by both the python-ironicclient wrapper
            # (actions) and the openstacksdk connection (reads).
            'auth_type = none',
            'endpoint_override = %s' % args.api,
            'api_retry_interval = %d' % args.retry_interval,
            'api_max_retries = 5',
            '',
        ]))

    import nova.conf
    from oslo_log import log as logging

    CONF = nova.conf.CONF
    logging.register_options(CONF)
    CONF([], project='nova', default_config_files=[conf_path])
    logging.setup(CONF, 'nova')

    from nova.compute import power_state
    from nova.compute import provider_tree
    from nova import context as nova_context
    from nova import objects

    objects.register_all()

    from nova.virt.ironic import driver as ironic_driver

    # Nova-internal, database-backed lookups: this compute service is the
    # only one, and it manages the one instance. Nothing that talks to
    # Ironic is replaced.
    objects.ServiceList.get_all_computes_by_hv_type = staticmethod(
        lambda ctxt, hv_type: objects.ServiceList(objects=[]))
    objects.InstanceList.get_uuids_by_host = staticmethod(
        lambda ctxt, host: [args.instance] if host == args.host else [])

    ctx = nova_context.get_admin_context()
    drv = ironic_driver.IronicDriver(virtapi=None)
    instance = objects.Instance(
        context=ctx, uuid=args.instance, node=args.node, host=args.host,
        vm_state='active', task_state=None, power_state=power_state.RUNNING)

    def state(info):
        return {'code': info.state,
                'name': power_state.STATE_MAP.get(info.state, str(info.state))}

    def api_version():
        try:
            c = drv.ironicclient
            if c.is_api_version_negotiated:
                return c.current_api_version
        except Exception as e:  # report, do not fail the step for it
            return 'unknown: %s' % e
        return None

    def cmd_nodes():
        return {'nodes': sorted(drv.get_available_nodes()),
                # GET /v1/nodes?associated=True&fields=instance_uuid
                'instance_uuids': sorted(drv.list_instance_uuids())}

    def cmd_info():
        fresh = drv.get_info(instance, use_cache=False)
        drv.get_available_nodes()  # the resource tracker's cache refresh
        cached = drv.get_info(instance)
        return {'fresh': state(fresh), 'cached': state(cached),
                'exists': drv.instance_exists(instance)}

    def timed(fn):
        start = time.monotonic()
        fn()
        return {'seconds': round(time.monotonic() - start, 3),
                'api_version': api_version()}

    def cmd_resources():
        out = {}
        for nodename in sorted(drv.get_available_nodes()):
            entry = {}
            try:
                entry['resource'] = drv.get_available_resource(nodename)
            except Exception as e:
                entry['resource_error'] = '%s: %s' % (type(e).__name__, e)
            try:
                tree = provider_tree.ProviderTree()
                tree.new_root(nodename, nodename)
                drv.update_provider_tree(tree, nodename)
                data = tree.data(nodename)
                entry['inventory'] = data.inventory
                entry['traits'] = sorted(data.traits)
            except Exception as e:
                entry['provider_tree_error'] = '%s: %s' % (type(e).__name__, e)
            try:
                # A node new to this host (a hash ring rebalance) is not in
                # the cache: the driver reads it alone, GET /v1/nodes/<uuid>.
                drv.node_cache.pop(nodename, None)
                tree = provider_tree.ProviderTree()
                tree.new_root(nodename, nodename)
                drv.update_provider_tree(tree, nodename)
                entry['inventory_uncached'] = tree.data(nodename).inventory
            except Exception as e:
                entry['uncached_error'] = '%s: %s' % (type(e).__name__, e)
            out[nodename] = entry
        return {'nodes': out}

    commands = {
        'nodes': cmd_nodes,
        'info': cmd_info,
        'power_off': lambda: timed(lambda: drv.power_off(instance)),
        'soft_power_off': lambda: timed(
            lambda: drv.power_off(instance, timeout=args.soft_timeout)),
        'power_on': lambda: timed(
            lambda: drv.power_on(ctx, instance, None)),
        'reboot': lambda: timed(
            lambda: drv.reboot(ctx, instance, None, 'HARD')),
        'soft_reboot': lambda: timed(
            lambda: drv.reboot(ctx, instance, None, 'SOFT')),
        'resources': cmd_resources,
    }

    current = {'cmd': None}

    def on_alarm(signum, frame):
        answer({'cmd': current['cmd'], 'ok': False,
                'error': 'timeout: the command did not finish within %d s'
                         % args.step_timeout})
        os._exit(3)

    signal.signal(signal.SIGALRM, on_alarm)
    answer({'cmd': 'ready', 'ok': True})

    for line in sys.stdin:
        cmd = line.strip()
        if not cmd:
            continue
        if cmd == 'quit':
            answer({'cmd': cmd, 'ok': True})
            break
        fn = commands.get(cmd)
        if fn is None:
            answer({'cmd': cmd, 'ok': False, 'error': 'unknown command'})
            continue
        current['cmd'] = cmd
        signal.alarm(args.step_timeout)
        try:
            result = fn()
            result.update({'cmd': cmd, 'ok': True})
        except Exception as e:
            result = {'cmd': cmd, 'ok': False,
                      'error': '%s: %s' % (type(e).__name__, e),
                      'traceback': traceback.format_exc()}
        finally:
            signal.alarm(0)
        answer(result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
