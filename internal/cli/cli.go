// Package cli implements the starter command: the operator's tool for
// configuration, the node store and (in later commands) power changes.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/metalpower/metalpower/internal/config"
)

// Env carries what commands share: output streams and the loaded
// configuration.
type Env struct {
	Stdout, Stderr io.Writer
	ConfigPath     string
}

// Config loads the configuration the global -config flag (or
// METALPOWER_CONFIG) names.
func (e *Env) Config() (config.Config, error) {
	return config.Load(e.ConfigPath)
}

type command struct {
	usage string
	run   func(ctx context.Context, env *Env, args []string) error
}

// commands maps "group verb" (or a single word) to its implementation.
var commands = map[string]command{}

func register(name, usage string, run func(ctx context.Context, env *Env, args []string) error) {
	commands[name] = command{usage: usage, run: run}
}

// errUsage asks Main to print the command's usage.
var errUsage = errors.New("usage")

// Main runs the command in args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("starter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := &Env{Stdout: stdout, Stderr: stderr}
	fs.StringVar(&env.ConfigPath, "config", os.Getenv("METALPOWER_CONFIG"), "configuration file (TOML); env METALPOWER_CONFIG")
	fs.Usage = func() { printUsage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	cmd, name, rest := lookup(rest)
	if name == "" {
		printUsage(stderr, fs)
		return 2
	}
	if err := cmd.run(ctx, env, rest); err != nil {
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "usage: starter %s\n", cmd.usage)
			return 2
		}
		fmt.Fprintf(stderr, "starter %s: %v\n", name, err)
		return 1
	}
	return 0
}

func lookup(args []string) (command, string, []string) {
	if len(args) >= 3 {
		if c, ok := commands[args[0]+" "+args[1]+" "+args[2]]; ok {
			return c, strings.Join(args[:3], " "), args[3:]
		}
	}
	if len(args) >= 2 {
		if c, ok := commands[args[0]+" "+args[1]]; ok {
			return c, args[0] + " " + args[1], args[2:]
		}
	}
	if len(args) >= 1 {
		if c, ok := commands[args[0]]; ok {
			return c, args[0], args[1:]
		}
	}
	return command{}, "", nil
}

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: starter [-config FILE] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", commands[n].usage)
	}
	fmt.Fprintln(w, "\nglobal flags:")
	fs.PrintDefaults()
}

// flags returns a flag set for a command that reports errors as usage.
func flags(name string, env *Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// keyValues collects repeated key=value flags.
type keyValues map[string]string

func (kv keyValues) String() string { return "" }

func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value", s)
	}
	kv[k] = v
	return nil
}
