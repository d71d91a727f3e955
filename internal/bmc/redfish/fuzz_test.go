package redfish

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
)

const fuzzBMCPassword = "bmc-Pw-fuzz9"

// serviceRoot is the simulator's service root (redfishsim serveRoot).
const serviceRoot = `{
 "@odata.context": "/redfish/v1/$metadata#ServiceRoot.ServiceRoot",
 "@odata.id": "/redfish/v1",
 "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
 "Id": "RootService", "Name": "Root Service",
 "RedfishVersion": "1.6.0", "UUID": "92384634-2938-5342-8820-489239905423",
 "Vendor": "Metalpower", "Product": "Redfish fleet simulator",
 "Systems": {"@odata.id": "/redfish/v1/Systems"},
 "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
 "Managers": {"@odata.id": "/redfish/v1/Managers"},
 "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
 "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}
}`

func system(powerState string) string {
	return `{"@odata.context":"/redfish/v1/$metadata#ComputerSystem.ComputerSystem","@odata.id":"/redfish/v1/Systems/1",` +
		`"@odata.type":"#ComputerSystem.v1_10_0.ComputerSystem","Id":"1","Name":"System","PowerState":` + powerState + `,` +
		`"Actions":{"#ComputerSystem.Reset":{"target":"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",` +
		`"ResetType@Redfish.AllowableValues":["On","ForceOff","GracefulShutdown","ForceRestart","GracefulRestart"]}}}`
}

// FuzzPowerState serves an arbitrary ComputerSystem document (with an
// arbitrary status) and reads the power state: never a panic; either
// "power on", "power off" or no state (""), or a *bmc.Error that does not show
// the password.
func FuzzPowerState(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{200, system(`"On"`)}, {200, system(`"Off"`)}, {200, system(`"PoweringOn"`)}, {200, system(`"PoweringOff"`)},
		{200, system(`"Paused"`)}, {200, system(`null`)}, {200, system(`42`)}, {200, system(`{"x":1}`)},
		{200, system(`"` + fuzzBMCPassword + `"`)},
		{200, `{"PowerState":"On"}`}, {200, `{}`}, {200, `[]`}, {200, `null`}, {200, ``}, {200, `{"PowerState":`},
		{200, `{"Actions":{"#ComputerSystem.Reset":{"target":1}},"PowerState":"On"}`},
		{200, `{"@odata.id":5,"PowerState":"On"}`},
		{200, `{"Links":{"Chassis":[null]},"PowerState":"Off"}`},
		{200, `{"Oem":{"x":` + strings.Repeat("[", 500) + `}}`},
		{200, "\xff\xfe"},
		{400, `{"error":{"code":"Base.1.0.GeneralError","message":"bad","@Message.ExtendedInfo":[{"Message":"` + fuzzBMCPassword + `"}]}}`},
		{401, ``}, {403, ``}, {404, `{"error":{}}`}, {409, ``}, {500, `oops`}, {503, ``},
	} {
		f.Add(s.status, []byte(s.body))
	}
	var (
		mu     sync.Mutex
		status int
		body   []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("OData-Version", "4.0")
		w.Header().Set("Content-Type", "application/json")
		switch strings.TrimSuffix(r.URL.Path, "/") {
		case "/redfish/v1":
			w.Write([]byte(serviceRoot))
		case "/redfish/v1/Systems/1":
			mu.Lock()
			s, b := status, body
			mu.Unlock()
			w.WriteHeader(s)
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	}))
	f.Cleanup(srv.Close)
	f.Fuzz(func(t *testing.T, st int, b []byte) {
		if st < 200 || st > 599 || (st >= 300 && st < 400) {
			return // interim answers and redirects are the HTTP client's business
		}
		mu.Lock()
		status, body = st, b
		mu.Unlock()
		c := New(Info{Endpoint: srv.URL, SystemID: "/redfish/v1/Systems/1", Username: "admin",
			Password: fuzzBMCPassword, VerifyCA: true, AuthType: "basic"}, Options{})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		state, err := c.PowerState(ctx)
		if err != nil {
			var be *bmc.Error
			if !errors.As(err, &be) {
				t.Fatalf("HTTP %d %q: error %v is a %T, not a *bmc.Error", st, b, err, err)
			}
			if strings.Contains(err.Error(), fuzzBMCPassword) {
				t.Fatalf("HTTP %d %q: error shows the password: %v", st, b, err)
			}
			return
		}
		switch state {
		case node.PowerOn, node.PowerOff, "":
		default:
			t.Fatalf("HTTP %d %q: power state %q", st, b, state)
		}
		if st >= 400 {
			t.Fatalf("HTTP %d %q: read power state %q, want an error", st, b, state)
		}
	})
}
