// Package soak holds the IPMI session soak test: sync passes over a fleet
// of Debian OpenIPMI ipmi_sim BMCs, with idle gaps across the BMCs' session
// timeout and go-ipmi's keepalive period, ipmi_sim restarts, hand-made
// drift and BMC calls cancelled mid-flight. A short run is part of every
// `go test`; `make soak` runs the long one (METALPOWER_SOAK=long).
package soak
