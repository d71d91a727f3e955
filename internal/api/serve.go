package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/bcrypt"

	"github.com/metalpower/metalpower/internal/codec"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/keystone"
	"github.com/metalpower/metalpower/internal/logging"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/temporalconn"
)

// Serve runs the API on [api] host_ip:port until ctx ends. ready, when not
// nil, receives the listening address.
func Serve(ctx context.Context, cfg config.Config, log zerolog.Logger, ready chan<- string) error {
	m, err := metrics.New()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer m.Shutdown(context.Background())
	s := &Server{TaskQueue: cfg.Temporal.TaskQueue, Log: log, Metrics: m, Pprof: cfg.Debug.Pprof,
		Policy: policy.Config{ServiceRoleElevatedAccess: cfg.API.RBACServiceRoleElevatedAccess,
			ServiceProjectName: cfg.API.RBACServiceProjectName}}
	switch cfg.API.AuthStrategy {
	case "http_basic":
		users, err := LoadHtpasswd(cfg.API.HTTPBasicAuthUserFile)
		if err != nil {
			return err
		}
		s.Auth = users
	case "keystone":
		v, err := keystone.FromConfig(cfg.KeystoneAuthtoken)
		if err != nil {
			return err
		}
		s.Auth = v
	}
	st, err := store.Open(ctx, cfg.Database.URL)
	if err != nil {
		return err
	}
	defer st.Close()
	s.Store = st
	c, err := temporalconn.Dial(ctx, cfg.Temporal, logging.NewTemporalLogger(log))
	if err != nil {
		return err
	}
	defer c.Close()
	s.Temporal = c
	// A client on the same connection whose SDK metrics (requests,
	// workflow starts, queries) go to /metrics.
	dc, fc, _ := codec.Converters(cfg.Temporal.PayloadEncryptionKeys) // validated by Dial
	if mc, err := client.NewClientFromExisting(c, client.Options{Namespace: cfg.Temporal.Namespace,
		Logger: logging.NewTemporalLogger(log), MetricsHandler: m.TemporalHandler(),
		DataConverter: dc, FailureConverter: fc}); err != nil {
		log.Warn().Err(err).Msg("Temporal SDK metrics are off")
	} else {
		defer mc.Close()
		s.Temporal = mc
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.API.HostIP, strconv.Itoa(cfg.API.Port)))
	if err != nil {
		return fmt.Errorf("[api] host_ip/port: %w", err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Info().Str("address", ln.Addr().String()).Str("auth_strategy", cfg.API.AuthStrategy).Msg("API listening")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// Htpasswd holds bcrypt password hashes by user, as Ironic's http_basic
// auth strategy reads them from an Apache htpasswd file.
type Htpasswd map[string][]byte

// LoadHtpasswd reads user:hash lines; only bcrypt hashes ($2y$, $2a$,
// $2b$) are accepted, as in Ironic.
func LoadHtpasswd(path string) (Htpasswd, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("[api] http_basic_auth_user_file: %w", err)
	}
	defer f.Close()
	users := Htpasswd{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" || !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("[api] http_basic_auth_user_file %s line %d: want user:bcrypt-hash", path, line)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, errors.New("[api] http_basic_auth_user_file " + path + ": no users")
	}
	return users, nil
}

// Authenticate verifies a request's HTTP basic credentials. Like
// Ironic's http_basic, it enforces no access policy: every user may do
// everything.
func (h Htpasswd) Authenticate(r *http.Request) (policy.Credentials, error) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return policy.Credentials{}, fmt.Errorf("no basic credentials: %w", policy.ErrUnauthenticated)
	}
	hash, known := h[user]
	if !known {
		// Same work for unknown users, so timing does not tell them apart.
		bcrypt.CompareHashAndPassword(dummyHash, []byte(pass))
		return policy.Credentials{}, fmt.Errorf("unknown user: %w", policy.ErrUnauthenticated)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return policy.Credentials{}, fmt.Errorf("wrong password: %w", policy.ErrUnauthenticated)
	}
	return policy.Unrestricted, nil
}

// Challenge asks for basic credentials.
func (Htpasswd) Challenge() string { return `Basic realm="Baremetal API"` }

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("metalpower"), bcrypt.MinCost)
