package keystone

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

// TestServiceUserValidatesTokens checks what metalpower's Keystone auth
// will rest on: its service user gets a token, finds the identity
// endpoint in the catalog, validates another user's token (the
// `service` role allows identity:validate_token) and sees a bogus one
// rejected with 404, as keystonemiddleware does.
func TestServiceUserValidatesTokens(t *testing.T) {
	k := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	auth := func(u User) *gophercloud.ProviderClient {
		t.Helper()
		p, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
			IdentityEndpoint: k.URL, Username: u.Name, Password: u.Password,
			DomainName: "Default", TenantName: k.ServiceProject,
		})
		if err != nil {
			t.Fatalf("authenticate as %s: %v", u.Name, err)
		}
		if p.Token() == "" {
			t.Fatalf("no token for %s", u.Name)
		}
		return p
	}
	service := auth(k.Metalpower)
	nova := auth(k.Nova)

	// The identity endpoint from the catalog bootstrap made.
	identity, err := openstack.NewIdentityV3(service, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	if identity.Endpoint != k.URL+"/" {
		t.Errorf("catalog identity endpoint %q, want %q", identity.Endpoint, k.URL+"/")
	}

	tok, err := tokens.Get(ctx, identity, nova.Token()).ExtractToken()
	if err != nil {
		t.Fatalf("validate nova's token as metalpower: %v", err)
	}
	if !tok.ExpiresAt.After(time.Now()) {
		t.Errorf("nova's token expires at %s, already past", tok.ExpiresAt)
	}
	user, err := tokens.Get(ctx, identity, nova.Token()).ExtractUser()
	if err != nil || user.Name != k.Nova.Name {
		t.Errorf("validated token's user = %+v, %v; want %s", user, err, k.Nova.Name)
	}

	_, err = tokens.Get(ctx, identity, "gAAAAABbogus-token").ExtractToken()
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("bogus token: got %v, want 404", err)
	}
}
