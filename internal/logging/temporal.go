package logging

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/log"
)

// NewTemporalLogger adapts l to the Temporal SDK's logger interface, for
// client.Options.Logger. Key-value pairs become zerolog fields, so SDK
// entries are as structured as our own.
//
// The returned logger also implements log.WithLogger, so the SDK's
// log.With attaches fields once to a child logger instead of re-sending
// them on every call.
func NewTemporalLogger(l zerolog.Logger) log.Logger {
	return temporalLogger{l: l}
}

var (
	_ log.Logger     = temporalLogger{}
	_ log.WithLogger = temporalLogger{}
)

type temporalLogger struct {
	l zerolog.Logger
}

func (t temporalLogger) Debug(msg string, keyvals ...any) { write(t.l.Debug(), msg, keyvals) }
func (t temporalLogger) Info(msg string, keyvals ...any)  { write(t.l.Info(), msg, keyvals) }
func (t temporalLogger) Warn(msg string, keyvals ...any)  { write(t.l.Warn(), msg, keyvals) }
func (t temporalLogger) Error(msg string, keyvals ...any) { write(t.l.Error(), msg, keyvals) }

// With returns a child logger whose entries all carry keyvals.
func (t temporalLogger) With(keyvals ...any) log.Logger {
	return temporalLogger{l: t.l.With().Fields(fieldList(keyvals)).Logger()}
}

func write(e *zerolog.Event, msg string, keyvals []any) {
	// A nil event means the level is filtered out: skip building fields.
	if e == nil {
		return
	}
	e.Fields(fieldList(keyvals)).Msg(msg)
}

// missing is the value given to the last key of an odd-length keyvals, so
// the key is still visible and the mistake noticeable.
const missing = "MISSING"

// redacted replaces the value of keys that look like credentials.
const redacted = "******"

// fieldList turns Temporal's alternating keys and values into the
// []any form zerolog's Fields accepts: every key a string, every error a
// string, every credential-looking value masked.
func fieldList(keyvals []any) []any {
	out := make([]any, 0, len(keyvals)+len(keyvals)%2)
	for i := 0; i < len(keyvals); i += 2 {
		key, ok := keyvals[i].(string)
		if !ok {
			key = fmt.Sprint(keyvals[i])
		}
		var value any = missing
		if i+1 < len(keyvals) {
			value = keyvals[i+1]
		}
		if isSensitive(key) {
			value = redacted
		}
		if err, ok := value.(error); ok {
			if isNil(err) {
				// As zerolog's AnErr does: a nil error is no field.
				continue
			}
			// zerolog writes a typed-nil error as a key without a value,
			// which is invalid JSON, so errors are flattened here.
			value = err.Error()
		}
		out = append(out, key, value)
	}
	return out
}

// isSensitive reports whether a field's key suggests its value is a
// credential. Nothing in metalpower should log one; this is a second line of
// defence, for example against a BMC password in an activity argument.
func isSensitive(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.Contains(k, "token")
}

// isNil reports whether err is nil or a nil pointer (or other nil-able
// kind) wrapped in a non-nil interface, on which Error would panic.
func isNil(err error) bool {
	if err == nil {
		return true
	}
	v := reflect.ValueOf(err)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}
