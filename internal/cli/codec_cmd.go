package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/metalpower/metalpower/internal/codec"
)

func init() {
	register("codec-server", "codec-server            serve /encode and /decode on [temporal] codec_listen for the Web UI and temporal --codec-endpoint", codecServer)
}

func codecServer(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	keys, err := codec.ParseKeys(cfg.Temporal.PayloadEncryptionKeys)
	if err != nil {
		return fmt.Errorf("[temporal] payload_encryption_keys: %w", err)
	}
	var auth func(*http.Request) bool
	if cfg.Temporal.CodecAuthToken != "" {
		auth = codec.BearerToken(cfg.Temporal.CodecAuthToken)
	} else if host, _, err := net.SplitHostPort(cfg.Temporal.CodecListen); err != nil || !net.ParseIP(host).IsLoopback() {
		return errors.New("[temporal] codec_auth_token is required when codec_listen is not a loopback address: the codec server decrypts payloads for whoever can reach it")
	}
	srv := &http.Server{Addr: cfg.Temporal.CodecListen, ReadHeaderTimeout: 10 * time.Second,
		Handler: codec.Handler(keys, strings.Split(cfg.Temporal.CodecCORSOrigins, ","), auth)}
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Fprintf(env.Stderr, "codec server on http://%s (keys %v)\n", srv.Addr, keys.IDs())
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
