package api

import "github.com/metalpower/metalpower/internal/node"

func newTestNode() *node.Node {
	return node.New("", "n", node.DriverIPMI, node.DriverInfo{"ipmi_address": "h"})
}
