// Package keystone talks to OpenStack's identity service: the service
// login that metalpower's API and its Nova notifier share, and the
// validation of users' tokens that keystonemiddleware does for Ironic.
package keystone

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
)

// Login is a keystoneauth login, as the [keystone_authtoken] and [nova]
// sections spell it.
type Login struct {
	AuthURL string
	// AuthType is "password" or "v3applicationcredential"; empty picks
	// the application credential when one is set, being the narrower
	// grant.
	AuthType                                       string
	Username, Password                             string
	ProjectName, UserDomainName, ProjectDomainName string
	ApplicationCredentialID                        string
	ApplicationCredentialSecret                    string
}

// AuthOptions is the Keystone v3 login for gophercloud. It keeps the
// credentials, so a token that expires or is revoked is replaced by a
// new login when Keystone or a service answers 401.
func (l Login) AuthOptions() gophercloud.AuthOptions {
	ao := gophercloud.AuthOptions{IdentityEndpoint: l.AuthURL, AllowReauth: true}
	appCred := l.ApplicationCredentialID != "" && l.ApplicationCredentialSecret != ""
	if l.AuthType == "v3applicationcredential" || (l.AuthType == "" && appCred) {
		// The credential carries its own project scope; Keystone refuses
		// an explicit one.
		ao.ApplicationCredentialID = l.ApplicationCredentialID
		ao.ApplicationCredentialSecret = l.ApplicationCredentialSecret
		return ao
	}
	ao.Username = l.Username
	ao.Password = l.Password
	ao.DomainName = orDefault(l.UserDomainName)
	if l.ProjectName != "" {
		// Without a scope Keystone uses the user's default project.
		ao.Scope = &gophercloud.AuthScope{ProjectName: l.ProjectName, DomainName: orDefault(l.ProjectDomainName)}
	}
	return ao
}

func orDefault(domain string) string {
	if domain == "" {
		return "Default"
	}
	return domain
}

// Availability maps a keystoneauth interface option to a catalog
// interface; the "publicURL" spellings of Identity v2 are accepted too.
func Availability(iface string) (gophercloud.Availability, error) {
	switch strings.TrimSuffix(iface, "URL") {
	case "", "internal":
		return gophercloud.AvailabilityInternal, nil
	case "public":
		return gophercloud.AvailabilityPublic, nil
	case "admin":
		return gophercloud.AvailabilityAdmin, nil
	}
	return "", fmt.Errorf("interface %q: want public, internal or admin", iface)
}

// Transport is an HTTP transport that verifies Keystone's certificate
// with the CAs in cafile (the system roots when empty), or not at all
// when insecure.
func Transport(cafile string, insecure bool) (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if cafile == "" && !insecure {
		return t, nil
	}
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: insecure}
	if cafile != "" {
		pem, err := os.ReadFile(cafile)
		if err != nil {
			return nil, fmt.Errorf("cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cafile %s: no PEM certificate in it", cafile)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}
