package cli

import (
	"context"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/logging"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/temporalconn"
)

// The set-up the commands share: the node their argument names, and the node
// store and Temporal client the configuration names. Each command sets up
// only what it uses, in its own order, so that the error an operator sees
// first is the same whichever helper a command goes through.

// oneNode parses the arguments of a command that takes one NODE (a name or
// a UUID) and no flags.
func oneNode(name string, env *Env, args []string) (string, error) {
	fs := flags(name, env)
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return "", errUsage
	}
	return fs.Arg(0), nil
}

// withStore runs fn on the node store the configuration names.
func withStore(ctx context.Context, env *Env, fn func(store.Store) error) error {
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	s, err := store.Open(ctx, cfg.Database.URL)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

// withNode runs fn on the node store for a command whose one argument is a
// NODE.
func withNode(ctx context.Context, env *Env, name string, args []string, fn func(s store.Store, ident string) error) error {
	ident, err := oneNode(name, env, args)
	if err != nil {
		return err
	}
	return withStore(ctx, env, func(s store.Store) error { return fn(s, ident) })
}

// withTemporal runs fn with the configuration and a client of the Temporal
// service it names.
func withTemporal(ctx context.Context, env *Env, fn func(config.Config, client.Client) error) error {
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	log, err := logging.New(env.Stderr, "error", "console")
	if err != nil {
		return err
	}
	c, err := temporalconn.Dial(ctx, cfg.Temporal, logging.NewTemporalLogger(log))
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(cfg, c)
}
