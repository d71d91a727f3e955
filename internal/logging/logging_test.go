package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/log"
)

// Compile-time checks that the adapter satisfies the SDK's interfaces.
var (
	_ log.Logger     = NewTemporalLogger(zerolog.Nop())
	_ log.WithLogger = temporalLogger{}
)

// entries decodes one JSON object per line.
func entries(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestNew(t *testing.T) {
	tests := []struct {
		level, format string
		wantErr       bool
	}{
		{"debug", "json", false},
		{"info", "console", false},
		{"warn", "auto", false},
		{"error", "json", false},
		{"trace", "json", true},
		{"INFO", "json", true},
		{"", "json", true},
		{"info", "text", true},
		{"info", "", true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		_, err := New(&buf, tt.level, tt.format)
		if (err != nil) != tt.wantErr {
			t.Errorf("New(%q, %q) error = %v, want error %v", tt.level, tt.format, err, tt.wantErr)
		}
	}
}

func TestNewFormats(t *testing.T) {
	tests := []struct {
		name     string
		toFile   bool // write to an *os.File (a regular file, not a terminal)
		format   string
		wantJSON bool
	}{
		{"json", false, "json", true},
		{"console", false, "console", false},
		{"auto on a buffer", false, "auto", true},
		{"auto on a regular file", true, "auto", true},
		{"console on a regular file", true, "console", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			var w io.Writer = &buf
			var file *os.File
			if tt.toFile {
				f, err := os.Create(filepath.Join(t.TempDir(), "log"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				w, file = f, f
			}
			l, err := New(w, "info", tt.format)
			if err != nil {
				t.Fatal(err)
			}
			l.Info().Str("node", "n1").Msg("hello")
			out := buf.Bytes()
			if file != nil {
				if out, err = os.ReadFile(file.Name()); err != nil {
					t.Fatal(err)
				}
			}

			var m map[string]any
			isJSON := json.Unmarshal(out, &m) == nil
			if isJSON != tt.wantJSON {
				t.Fatalf("output %q: JSON = %v, want %v", out, isJSON, tt.wantJSON)
			}
			if !bytes.Contains(out, []byte("hello")) || !bytes.Contains(out, []byte("n1")) {
				t.Errorf("output %q lacks the message or field", out)
			}
			if isJSON {
				if _, err := time.Parse(time.RFC3339, fmt.Sprint(m["time"])); err != nil {
					t.Errorf("time field %v: %v", m["time"], err)
				}
			} else if bytes.Contains(out, []byte("\x1b[")) {
				t.Errorf("console output to a non-terminal is coloured: %q", out)
			}
		})
	}
}

func TestLevelFiltering(t *testing.T) {
	tests := []struct {
		level string
		want  []string // levels that get through
	}{
		{"debug", []string{"debug", "info", "warn", "error"}},
		{"info", []string{"info", "warn", "error"}},
		{"warn", []string{"warn", "error"}},
		{"error", []string{"error"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l, err := New(&buf, tt.level, "json")
		if err != nil {
			t.Fatal(err)
		}
		tl := NewTemporalLogger(l)
		tl.Debug("m")
		tl.Info("m")
		tl.Warn("m")
		tl.Error("m")
		var got []string
		for _, e := range entries(t, &buf) {
			got = append(got, e["level"].(string))
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("level %s: logged %v, want %v", tt.level, got, tt.want)
		}
	}
}

type nilErr struct{}

func (*nilErr) Error() string { return "nil receiver" }

func TestTemporalLoggerFields(t *testing.T) {
	var typedNil *nilErr
	tests := []struct {
		name    string
		keyvals []any
		want    map[string]any // expected fields; the value absent means no such field
	}{
		{"pairs", []any{"WorkflowID", "wf-1", "Attempt", 3, "Ok", true},
			map[string]any{"WorkflowID": "wf-1", "Attempt": 3.0, "Ok": true}},
		{"odd count", []any{"a", "x", "dangling"},
			map[string]any{"a": "x", "dangling": "MISSING"}},
		{"non-string key", []any{42, "v", time.Second, "w"},
			map[string]any{"42": "v", "1s": "w"}},
		{"error", []any{"Error", errors.New("boom")},
			map[string]any{"Error": "boom"}},
		// A nil error reaches the logger as an untyped nil, which cannot be
		// told from any other nil value: it is logged as null.
		{"nil", []any{"Error", error(nil), "after", 1},
			map[string]any{"Error": nil, "after": 1.0}},
		{"typed nil error", []any{"Error", typedNil, "after", 1},
			map[string]any{"Error": absent, "after": 1.0}},
		{"struct value", []any{"node", struct{ UUID string }{"u1"}},
			map[string]any{"node": map[string]any{"UUID": "u1"}}},
		{"redaction", []any{"Password", "hunter2", "client_secret", "s", "X-Auth-Token", "t", "ipmi_password", errors.New("e"), "user", "admin"},
			map[string]any{"Password": "******", "client_secret": "******", "X-Auth-Token": "******", "ipmi_password": "******", "user": "admin"}},
		{"none", nil, map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := New(&buf, "debug", "json")
			if err != nil {
				t.Fatal(err)
			}
			NewTemporalLogger(l).Info("msg", tt.keyvals...)
			es := entries(t, &buf)
			if len(es) != 1 {
				t.Fatalf("got %d entries, want 1: %s", len(es), buf.String())
			}
			e := es[0]
			if e["message"] != "msg" || e["level"] != "info" {
				t.Errorf("entry %v lacks message or level", e)
			}
			for k, want := range tt.want {
				got, ok := e[k]
				if want == absent {
					if ok {
						t.Errorf("field %s = %v, want absent", k, got)
					}
					continue
				}
				if !ok || !jsonEqual(got, want) {
					t.Errorf("field %s = %v, want %v (entry %v)", k, got, want, e)
				}
			}
			if strings.Contains(buf.String(), "hunter2") {
				t.Errorf("secret logged: %s", buf.String())
			}
		})
	}
}

// absent marks a field that must not appear in an entry.
const absent = "<absent>"

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestTemporalLoggerWith(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	base := NewTemporalLogger(l)
	child := log.With(base, "Namespace", "default", "token", "t0")
	grandchild := log.With(child, "WorkflowID", "wf-1")

	grandchild.Warn("w", "Attempt", 2)
	base.Info("b")

	es := entries(t, &buf)
	if len(es) != 2 {
		t.Fatalf("got %d entries, want 2: %s", len(es), buf.String())
	}
	want := map[string]any{"Namespace": "default", "token": "******", "WorkflowID": "wf-1", "Attempt": 2.0, "level": "warn"}
	for k, v := range want {
		if es[0][k] != v {
			t.Errorf("grandchild field %s = %v, want %v", k, es[0][k], v)
		}
	}
	for _, k := range []string{"Namespace", "WorkflowID", "token"} {
		if _, ok := es[1][k]; ok {
			t.Errorf("With modified the parent: base entry has %s", k)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer devNull.Close()
	regular, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()

	tests := []struct {
		name string
		w    io.Writer
		want bool
	}{
		{"character device", devNull, true},
		{"regular file", regular, false},
		{"buffer", &bytes.Buffer{}, false},
	}
	for _, tt := range tests {
		if got := isTerminal(tt.w); got != tt.want {
			t.Errorf("isTerminal(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
