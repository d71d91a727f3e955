// Package logging builds the zerolog logger every metalpower binary uses and
// adapts it for the Temporal SDK, so that SDK and application logs share one
// stream, one format and one level.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w at the given level ("debug", "info",
// "warn" or "error") in the given format:
//
//   - "json": one JSON object per line, for log collectors;
//   - "console": human-readable lines, coloured only when w is a terminal;
//   - "auto": console when w is a terminal, JSON otherwise.
//
// Every entry carries a timestamp. The accepted names are exactly those of
// the [log] options in package config.
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	tty := isTerminal(w)
	switch format {
	case "json":
	case "console":
		w = consoleWriter(w, tty)
	case "auto":
		if tty {
			w = consoleWriter(w, true)
		}
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: must be auto, json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

func parseLevel(level string) (zerolog.Level, error) {
	// zerolog.ParseLevel also accepts trace, fatal, panic and disabled;
	// the configuration documents only these four.
	switch level {
	case "debug":
		return zerolog.DebugLevel, nil
	case "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, fmt.Errorf("log level %q: must be debug, info, warn or error", level)
}

func consoleWriter(w io.Writer, color bool) io.Writer {
	return zerolog.ConsoleWriter{
		Out:        w,
		NoColor:    !color,
		TimeFormat: time.RFC3339,
	}
}

// isTerminal reports whether w is a character device such as a terminal.
// Checking the file mode avoids a dependency on a terminal package; it also
// counts /dev/null, where the format does not matter.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0
}
