// Package drivers links every power driver into a build: importing it
// registers them with internal/bmc. A new driver adds its line here.
package drivers

import (
	_ "github.com/metalpower/metalpower/internal/bmc/ipmi"
	_ "github.com/metalpower/metalpower/internal/bmc/redfish"
	_ "github.com/metalpower/metalpower/internal/bmc/snmp"
)
