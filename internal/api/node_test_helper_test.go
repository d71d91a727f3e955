package api

import (
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/node"
)

func newTestNode() *node.Node {
	return node.New("", "n", ipmi.Name, node.DriverInfo{"ipmi_address": "h"})
}
