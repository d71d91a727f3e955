#!/bin/sh
# Creates the Temporal namespace metalpower uses ([temporal] namespace) when
# it does not exist. The search attributes metalpower needs (NodeUUID,
# NodeName, PowerTarget, all Keyword) are created by the worker at start.
set -eu
NAMESPACE=${DEFAULT_NAMESPACE:-default}
ADDRESS=${TEMPORAL_ADDRESS:-temporal:7233}

i=0
until temporal operator cluster health --address "$ADDRESS"; do
	i=$((i + 1))
	if [ "$i" -ge 30 ]; then
		echo "Temporal at $ADDRESS is not healthy" >&2
		exit 1
	fi
	sleep 2
done
temporal operator namespace describe -n "$NAMESPACE" --address "$ADDRESS" >/dev/null 2>&1 ||
	temporal operator namespace create -n "$NAMESPACE" --retention 72h --address "$ADDRESS"
echo "namespace $NAMESPACE ready"
