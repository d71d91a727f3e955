package nova

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/keystone"
	ks "github.com/metalpower/metalpower/internal/testbed/keystone"
)

// TestPowerUpdateThroughRealKeystone: the notifier logs in to a real
// Keystone as the nova service user, finds the compute endpoint in its
// catalog (interface internal), and sends a token that Keystone confirms
// belongs to that user with role admin, as Nova's
// os-server-external-events policy wants. Wrong credentials are a
// permanent error naming Keystone; Keystone down is a retryable one.
// (Real Nova services are issue 24's test bed; here a stand-in that
// validates tokens with Keystone records the event.)
func TestPowerUpdateThroughRealKeystone(t *testing.T) {
	k := ks.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	validator, err := keystone.FromConfig(config.KeystoneAuthtoken{AuthURL: k.URL, AuthType: "password",
		Username: k.Metalpower.Name, Password: k.Metalpower.Password, ProjectName: k.ServiceProject,
		UserDomainName: "Default", ProjectDomainName: "Default", Interface: "internal", TokenCacheTime: 300, HTTPConnectTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		events []string
	)
	compute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		creds, err := validator.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/v2.1/os-server-external-events" || r.Header.Get("OpenStack-API-Version") != "compute 2.76" ||
			creds.UserName != k.Nova.Name || !creds.HasRole("admin") || creds.ProjectName != k.ServiceProject {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		var body struct {
			Events []map[string]any `json:"events"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		for _, e := range body.Events {
			events = append(events, fmt.Sprint(e["name"], " ", e["server_uuid"], " ", e["tag"]))
			e["code"], e["status"] = 200, "completed"
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"events": body.Events})
	}))
	defer compute.Close()
	// Only the internal endpoint is the stand-in: the notifier must pick
	// it by interface.
	if _, err := k.Script(ctx, "service create --name nova compute\n"+
		"endpoint create --region RegionOne compute internal "+compute.URL+"/v2.1\n"+
		"endpoint create --region RegionOne compute public http://127.0.0.1:9/v2.1\n"); err != nil {
		t.Fatal(err)
	}

	cfg := config.Nova{SendPowerNotifications: true, AuthURL: k.URL, Username: k.Nova.Name, Password: k.Nova.Password,
		ProjectName: k.ServiceProject, UserDomainName: "Default", ProjectDomainName: "Default", Interface: "internal", RegionName: "RegionOne"}
	n, err := New(cfg, Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.PowerUpdate(ctx, uuidOn, "power off"); err != nil {
		t.Fatalf("PowerUpdate through the real Keystone: %v", err)
	}
	mu.Lock()
	got := slices.Clone(events)
	mu.Unlock()
	if want := []string{"power-update " + uuidOn + " POWER_OFF"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}

	wrong := cfg
	wrong.Password = "hunter2-wrong"
	bad, err := New(wrong, Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = bad.PowerUpdate(ctx, uuidOn, "power on")
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "Keystone") || strings.Contains(err.Error(), "hunter2-wrong") {
		t.Errorf("wrong password: %v (permanent %v); want a permanent error naming Keystone, without the password", err, IsPermanent(err))
	}

	k.Stop()
	fresh, err := New(cfg, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.PowerUpdate(ctx, uuidOn, "power on"); err == nil || IsPermanent(err) {
		t.Errorf("Keystone down: %v; want a retryable error", err)
	}
}
