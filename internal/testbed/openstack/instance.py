"""Make a Nova server bound to a baremetal node with Nova's own objects.

No scheduler, image or network: the server is what a deployment would
have left behind (ACTIVE, running, on HOST's node NODE), in cell1 with its
mapping in the API database. Nova's API needs the empty network info
cache to show it.

usage: instance.py NOVA_CONF HOST FLAVOR PROJECT_ID USER_ID NODE=NAME...
prints each server's UUID, one a line, in order.
"""
import sys

from oslo_utils import timeutils, uuidutils

from nova import config, context, objects
from nova.compute import power_state, vm_states
from nova.network import model as network_model


def main(conf, host, flavor_name, project_id, user_id, *servers):
    config.parse_args([sys.argv[0], '--config-file', conf])
    objects.register_all()
    ctxt = context.get_admin_context()
    flavor = objects.Flavor.get_by_name(ctxt, flavor_name)
    cell = next(c for c in objects.CellMappingList.get_all(ctxt) if c.name == 'cell1')
    for server in servers:
        node, name = server.split('=', 1)
        print(create(ctxt, cell, flavor, host, node, name, project_id, user_id))


def create(ctxt, cell, flavor, host, node, name, project_id, user_id):
    server = uuidutils.generate_uuid()
    with context.target_cell(ctxt, cell) as cctxt:
        objects.Instance(
            context=cctxt, uuid=server, project_id=project_id, user_id=user_id,
            display_name=name, hostname=name, host=host, launched_on=host, node=node,
            vm_state=vm_states.ACTIVE, power_state=power_state.RUNNING, task_state=None,
            flavor=flavor, old_flavor=None, new_flavor=None, instance_type_id=flavor.id,
            memory_mb=flavor.memory_mb, vcpus=flavor.vcpus, root_gb=flavor.root_gb,
            ephemeral_gb=flavor.ephemeral_gb, image_ref='', availability_zone='nova',
            launched_at=timeutils.utcnow(), system_metadata={}, metadata={},
            info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo([])),
        ).create()
    objects.InstanceMapping(context=ctxt, instance_uuid=server, cell_mapping=cell,
                            project_id=project_id, user_id=user_id,
                            queued_for_delete=False).create()
    return server


if __name__ == '__main__':
    main(*sys.argv[1:])
