// Package temporalconn connects to Temporal as the [temporal] options say
// (plain, TLS or mutual TLS, API key) and makes sure the search attributes
// metalpower writes exist.
package temporalconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/metalpower/metalpower/internal/codec"
	"github.com/metalpower/metalpower/internal/config"
)

// Dial connects to the Temporal frontend.
func Dial(ctx context.Context, c config.Temporal, logger log.Logger) (cl client.Client, err error) {
	opts := client.Options{HostPort: c.Address, Namespace: c.Namespace, Logger: logger}
	if opts.DataConverter, opts.FailureConverter, err = codec.Converters(c.PayloadEncryptionKeys); err != nil {
		return nil, fmt.Errorf("[temporal] payload_encryption_keys: %w", err)
	}
	if c.TLS {
		tlsConf, err := tlsConfig(c)
		if err != nil {
			return nil, err
		}
		opts.ConnectionOptions.TLS = tlsConf
	}
	if c.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(c.APIKey)
	}
	cl, err = client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", c.Address, c.Namespace, err)
	}
	return cl, nil
}

func tlsConfig(c config.Temporal) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName, InsecureSkipVerify: c.TLSInsecureSkipVerify} //nolint:gosec // operator's explicit choice, for testing
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("[temporal] tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("[temporal] tls_ca_file: no certificate in %s", c.TLSCAFile)
		}
		conf.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("[temporal] tls_cert_file/tls_key_file: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// EnsureSearchAttributes creates the Keyword search attributes that are
// missing in the namespace, so the worker can start on a fresh cluster.
func EnsureSearchAttributes(ctx context.Context, cl client.Client, namespace string, names ...string) error {
	resp, err := cl.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, n := range names {
		if _, ok := resp.GetCustomAttributes()[n]; !ok {
			missing[n] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = cl.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("create search attributes %v: %w", names, err)
	}
	return awaitSearchAttributes(ctx, cl, namespace, missing)
}

// awaitSearchAttributes waits until the frontend maps the new attributes:
// a real server (SQL visibility) refreshes its namespace cache every few
// seconds, and a workflow started with an attribute it does not map yet
// is refused ("no mapping defined for search attribute").
func awaitSearchAttributes(ctx context.Context, cl client.Client, namespace string, added map[string]enumspb.IndexedValueType) error {
	deadline := time.Now().Add(time.Minute)
	for name := range added {
		for {
			_, err := cl.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
				Namespace: namespace, Query: name + " = 'metalpower-check'",
			})
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("search attribute %s created but not usable yet: %w", name, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil
}
