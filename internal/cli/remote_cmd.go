package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	osconfig "github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/metalpower/metalpower/internal/keystone"
)

// The remote commands talk to the REST API, as the baremetal CLI does,
// with the caller's own OpenStack credentials: OS_CLOUD and clouds.yaml,
// or the OS_* variables; with neither, noauth. The API is found in the
// Keystone catalog (service type baremetal) unless -os-endpoint or
// OS_ENDPOINT names it.

// remoteVersion is the microversion the remote commands ask for.
const remoteVersion = "1.95"

func init() {
	register("remote node list", "remote node list [-os-endpoint URL] [-json]   list nodes through the REST API", remoteList)
	register("remote node show", "remote node show NODE [-os-endpoint URL]      show a node through the REST API", remoteShow)
	for verb, target := range powerVerbs {
		register("remote power "+verb, "remote power "+verb+" NODE [-os-endpoint URL]   "+target+" through the REST API", remotePower(target))
	}
}

func remoteFlags(name string, env *Env) (*flag.FlagSet, *string) {
	fs := flags(name, env)
	endpoint := fs.String("os-endpoint", os.Getenv("OS_ENDPOINT"), "the API's URL; default: the catalog's baremetal endpoint, or http://127.0.0.1:6385 without Keystone; env OS_ENDPOINT")
	return fs, endpoint
}

// baremetalClient authenticates as the environment says and returns a
// client of the API.
func baremetalClient(ctx context.Context, endpoint string) (*gophercloud.ServiceClient, error) {
	var (
		ao        gophercloud.AuthOptions
		eo        gophercloud.EndpointOpts
		tlsConfig *tls.Config
	)
	switch {
	case os.Getenv("OS_CLOUD") != "":
		var err error
		ao, eo, tlsConfig, err = clouds.Parse()
		if err != nil {
			return nil, fmt.Errorf("OS_CLOUD %q: %w", os.Getenv("OS_CLOUD"), err)
		}
	case os.Getenv("OS_AUTH_URL") != "" && os.Getenv("OS_AUTH_TYPE") != "none":
		a, err := authFromEnv()
		if err != nil {
			return nil, err
		}
		ao = a
		// python-openstackclient's default interface is public.
		avail, err := keystone.Availability(firstOf(os.Getenv("OS_INTERFACE"), "public"))
		if err != nil {
			return nil, fmt.Errorf("OS_INTERFACE: %w", err)
		}
		eo = gophercloud.EndpointOpts{Region: os.Getenv("OS_REGION_NAME"), Availability: avail}
	default:
		if endpoint == "" {
			endpoint = "http://127.0.0.1:6385"
		}
		c, err := noauth.NewBareMetalNoAuth(noauth.EndpointOpts{IronicEndpoint: strings.TrimSuffix(endpoint, "/") + "/v1/"})
		if err != nil {
			return nil, err
		}
		c.Microversion = remoteVersion
		return c, nil
	}
	// Keep the credentials so an expired token is replaced.
	ao.AllowReauth = true
	provider, err := osconfig.NewProviderClient(ctx, ao, osconfig.WithTLSConfig(tlsConfig))
	if err != nil {
		return nil, keystoneError(ao.IdentityEndpoint, err)
	}
	c, err := openstack.NewBareMetalV1(provider, eo)
	if err != nil && endpoint == "" {
		return nil, fmt.Errorf("no baremetal endpoint in the catalog (region %q, interface %q): register metalpower's API as service type baremetal, or pass -os-endpoint: %w", eo.Region, eo.Availability, err)
	}
	if endpoint != "" {
		c = &gophercloud.ServiceClient{ProviderClient: provider, Endpoint: strings.TrimSuffix(endpoint, "/") + "/v1/", Type: "baremetal"}
	}
	c.Microversion = remoteVersion
	return c, nil
}

// authFromEnv reads the variables of an openrc file, as
// python-openstackclient does. (gophercloud's AuthOptionsFromEnv knows
// no OS_USER_DOMAIN_NAME or OS_PROJECT_DOMAIN_NAME, which every openrc
// sets.)
func authFromEnv() (gophercloud.AuthOptions, error) {
	env := os.Getenv
	ao := gophercloud.AuthOptions{IdentityEndpoint: env("OS_AUTH_URL"),
		Username: env("OS_USERNAME"), UserID: env("OS_USER_ID"), Password: env("OS_PASSWORD"),
		DomainName: firstOf(env("OS_USER_DOMAIN_NAME"), env("OS_DOMAIN_NAME")), DomainID: env("OS_USER_DOMAIN_ID"),
		ApplicationCredentialID: env("OS_APPLICATION_CREDENTIAL_ID"), ApplicationCredentialName: env("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: env("OS_APPLICATION_CREDENTIAL_SECRET")}
	appCred := ao.ApplicationCredentialSecret != ""
	switch {
	case !appCred && ao.Username == "" && ao.UserID == "":
		return ao, errors.New("OS_AUTH_URL is set but not OS_USERNAME (or OS_USER_ID, or OS_APPLICATION_CREDENTIAL_ID and _SECRET)")
	case !appCred && ao.Password == "":
		return ao, errors.New("OS_AUTH_URL is set but not OS_PASSWORD")
	case ao.Username != "" && ao.DomainName == "" && ao.DomainID == "":
		ao.DomainName = "Default"
	}
	switch {
	case appCred:
		// The credential carries its own scope.
	case env("OS_SYSTEM_SCOPE") != "":
		ao.Scope = &gophercloud.AuthScope{System: true}
	case env("OS_PROJECT_ID") != "":
		ao.Scope = &gophercloud.AuthScope{ProjectID: env("OS_PROJECT_ID")}
	case env("OS_PROJECT_NAME") != "" || env("OS_TENANT_NAME") != "":
		ao.Scope = &gophercloud.AuthScope{ProjectName: firstOf(env("OS_PROJECT_NAME"), env("OS_TENANT_NAME")),
			DomainName: firstOf(env("OS_PROJECT_DOMAIN_NAME"), "Default"), DomainID: env("OS_PROJECT_DOMAIN_ID")}
		if ao.Scope.DomainID != "" {
			ao.Scope.DomainName = ""
		}
	}
	return ao, nil
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// keystoneError says why the login failed, without the credentials.
func keystoneError(authURL string, err error) error {
	if gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		return fmt.Errorf("Keystone at %s refused the credentials (check OS_USERNAME, OS_PASSWORD, the domains and the scope, or the cloud's auth in clouds.yaml)", authURL)
	}
	return fmt.Errorf("Keystone at %s: %w", authURL, err)
}

// apiError is the API's refusal as Ironic words it: the faultstring of
// its error body, with the status.
func apiError(err error) error {
	var status gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &status) {
		return err
	}
	var outer struct {
		ErrorMessage string `json:"error_message"`
	}
	var inner struct {
		Faultstring string `json:"faultstring"`
	}
	if json.Unmarshal(status.Body, &outer) == nil && json.Unmarshal([]byte(outer.ErrorMessage), &inner) == nil && inner.Faultstring != "" {
		return fmt.Errorf("%s (HTTP %d)", inner.Faultstring, status.Actual)
	}
	return fmt.Errorf("%s %s: HTTP %d", status.Method, status.URL, status.Actual)
}

func remoteList(ctx context.Context, env *Env, args []string) error {
	fs, endpoint := remoteFlags("remote node list", env)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	c, err := baremetalClient(ctx, *endpoint)
	if err != nil {
		return err
	}
	pages, err := nodes.ListDetail(c, nodes.ListOpts{}).AllPages(ctx)
	if err != nil {
		return apiError(err)
	}
	list, err := nodes.ExtractNodes(pages)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(list)
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "UUID\tNAME\tPOWER STATE\tPROVISION STATE\tMAINTENANCE\tOWNER")
	for _, n := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\n", n.UUID, n.Name, n.PowerState, n.ProvisionState, n.Maintenance, n.Owner)
	}
	return w.Flush()
}

func remoteShow(ctx context.Context, env *Env, args []string) error {
	fs, endpoint := remoteFlags("remote node show", env)
	if err := fs.Parse(reorder(fs, args)); err != nil || fs.NArg() != 1 {
		return errUsage
	}
	c, err := baremetalClient(ctx, *endpoint)
	if err != nil {
		return err
	}
	n, err := nodes.Get(ctx, c, fs.Arg(0)).Extract()
	if err != nil {
		return apiError(err)
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(n)
}

func remotePower(target string) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error {
		fs, endpoint := remoteFlags("remote power", env)
		if err := fs.Parse(reorder(fs, args)); err != nil || fs.NArg() != 1 {
			return errUsage
		}
		c, err := baremetalClient(ctx, *endpoint)
		if err != nil {
			return err
		}
		err = nodes.ChangePowerState(ctx, c, fs.Arg(0), nodes.PowerStateOpts{Target: nodes.TargetPowerState(target)}).ExtractErr()
		if err != nil {
			return apiError(err)
		}
		fmt.Fprintf(env.Stdout, "%s requested for %s\n", target, fs.Arg(0))
		return nil
	}
}
