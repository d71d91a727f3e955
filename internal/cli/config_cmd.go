package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/store"
)

func init() {
	register("config show", "config show            print the effective configuration (secrets masked)", configShow)
	register("config check", "config check           validate the configuration and exit", configCheck)
	register("config options", "config options         list every option with its default and environment variable (Markdown)", configOptions)
	register("db migrate", "db migrate             apply the node store's schema migrations", dbMigrate)
}

func configShow(_ context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	c, err := env.Config()
	if err != nil {
		return err
	}
	fmt.Fprint(env.Stdout, c.String())
	return nil
}

func configCheck(_ context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	if _, err := env.Config(); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "configuration ok")
	return nil
}

func dbMigrate(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	// Opening the store applies the migrations.
	return withStore(ctx, env, func(store.Store) error {
		fmt.Fprintln(env.Stdout, "node store schema is up to date")
		return nil
	})
}

// configOptions prints the option table docs/configuration.md carries; a test keeps
// the two in step.
func configOptions(_ context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	fmt.Fprintln(env.Stdout, "| Option | Environment variable | Default | Description |")
	fmt.Fprintln(env.Stdout, "|---|---|---|---|")
	for _, o := range config.Options() {
		def := "`" + o.Default + "`"
		if o.Default == "" {
			def = "(empty)"
		}
		help := strings.ReplaceAll(o.Help, "|", "\\|")
		if o.Secret {
			help += " Secret: shown as `******`."
		}
		fmt.Fprintf(env.Stdout, "| `%s` | `%s` | %s | %s |\n", o.Key(), o.Env, def, help)
	}
	return nil
}
