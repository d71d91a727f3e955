package cli

import (
	"context"
	"os"

	"github.com/metalpower/metalpower/internal/api"
	"github.com/metalpower/metalpower/internal/logging"
)

func init() {
	register("api", "api                     serve the Ironic-compatible REST API on [api] host_ip:port", serveAPI)
}

func serveAPI(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	return api.Serve(ctx, cfg, log, nil)
}
