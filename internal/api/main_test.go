package api_test

import (
	"os"
	"testing"

	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

var srv *itest.Server

// TestMain runs the package's tests on one dev server, then checks that no
// secret reached any workflow history.
func TestMain(m *testing.M) {
	os.Exit(itest.MustMain(m, &srv, func() error {
		return itest.ScanHistoriesForSecrets(srv, testbed.IPMIPassword, testbed.RedfishPassword, testbed.KeystonePassword)
	}))
}
