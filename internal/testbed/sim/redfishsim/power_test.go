package redfishsim

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func reset(t *testing.T, s *Sim, base, id, resetType string) response {
	t.Helper()
	return do(t, base, "POST", s.SystemPath(id)+"/Actions/ComputerSystem.Reset", `{"ResetType":"`+resetType+`"}`, admin)
}

// readPower returns PowerState as a client sees it.
func readPower(t *testing.T, s *Sim, base, id string) string {
	t.Helper()
	r := do(t, base, "GET", s.SystemPath(id), "", admin)
	if r.status != 200 {
		t.Fatalf("GET system %s = %d", id, r.status)
	}
	state, _ := r.doc["PowerState"].(string)
	return state
}

func TestResetEffects(t *testing.T) {
	tests := []struct {
		from, resetType string
		want            string // state afterwards
		status          int
	}{
		{"Off", "On", "On", 204},
		{"On", "On", "On", 204},
		{"Off", "ForceOn", "On", 204},
		{"On", "ForceOff", "Off", 204},
		{"Off", "ForceOff", "Off", 204},
		{"On", "GracefulShutdown", "Off", 204},
		{"On", "PushPowerButton", "Off", 204},
		{"Off", "PushPowerButton", "On", 204},
		{"On", "ForceRestart", "On", 204},
		{"Off", "ForceRestart", "On", 204},
		{"On", "PowerCycle", "On", 204},
		{"Off", "PowerCycle", "On", 204},
		{"On", "GracefulRestart", "On", 204},
		{"Off", "GracefulRestart", "Off", 409},
		{"On", "Nmi", "On", 204},
		{"Off", "Nmi", "Off", 204},
	}
	s, base := start(t, Options{Systems: len(tests)})
	for i, tt := range tests {
		id := s.SystemIDs()[i]
		t.Run(tt.from+"/"+tt.resetType, func(t *testing.T) {
			// ForceOn is not advertised by default, as on many BMCs.
			s.SetAllowableResetTypes(id, append(slices.Clone(defaultResetTypes), "ForceOn"))
			s.SetPowerState(id, tt.from)
			r := reset(t, s, base, id, tt.resetType)
			if r.status != tt.status {
				t.Fatalf("reset = %d %v, want %d", r.status, r.doc, tt.status)
			}
			if got := s.PowerState(id); got != tt.want {
				t.Errorf("PowerState = %s, want %s", got, tt.want)
			}
			if got := readPower(t, s, base, id); got != tt.want {
				t.Errorf("GET PowerState = %s, want %s", got, tt.want)
			}
			var wantResets []string
			if tt.status == 204 {
				wantResets = []string{tt.resetType}
			} else if !strings.HasSuffix(messageID(r.doc), "ActionParameterValueConflict") {
				t.Errorf("MessageId = %q", messageID(r.doc))
			}
			if got := s.Resets(id); !slices.Equal(got, wantResets) {
				t.Errorf("Resets = %v, want %v", got, wantResets)
			}
		})
	}
}

func TestTransitionDelay(t *testing.T) {
	const delay = 250 * time.Millisecond
	s, base := start(t, Options{TransitionDelay: delay})

	t0 := time.Now()
	if r := reset(t, s, base, "1", "ForceOff"); r.status != 204 {
		t.Fatalf("ForceOff = %d", r.status)
	}
	if got := readPower(t, s, base, "1"); got != "On" && time.Since(t0) < delay {
		t.Fatalf("right after ForceOff, PowerState = %s, want still On", got)
	}
	waitFor(t, s, base, "1", "Off", 5*time.Second)
	if d := time.Since(t0); d < delay {
		t.Errorf("turned Off after %v, before TransitionDelay %v", d, delay)
	}
	if got := s.PowerState("1"); got != "Off" {
		t.Errorf("PowerState = %s, want Off", got)
	}

	// Two button presses within the delay cancel out.
	reset(t, s, base, "1", "PushPowerButton")
	reset(t, s, base, "1", "PushPowerButton")
	time.Sleep(delay + 50*time.Millisecond)
	if got := s.PowerState("1"); got != "Off" {
		t.Errorf("after two presses, PowerState = %s, want Off", got)
	}
}

// waitFor polls the system over HTTP until it reports want.
func waitFor(t *testing.T, s *Sim, base, id, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for readPower(t, s, base, id) != want {
		if time.Now().After(deadline) {
			t.Fatalf("system %s never reached %s within %v", id, want, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResetErrors(t *testing.T) {
	s, base := start(t, Options{})
	s.SetAllowableResetTypes("1", []string{"On", "ForceOff"})
	path := s.SystemPath("1") + "/Actions/ComputerSystem.Reset"
	tests := []struct {
		name, body string
		msgID      string
	}{
		{"type not allowed", `{"ResetType":"ForceRestart"}`, "Base.1.8.ActionParameterNotSupported"},
		{"unknown type", `{"ResetType":"Explode"}`, "Base.1.8.ActionParameterNotSupported"},
		{"malformed JSON", `{"ResetType":`, "Base.1.8.MalformedJSON"},
		{"not an object", `"On"`, "Base.1.8.MalformedJSON"},
		{"empty body", ``, "Base.1.8.MalformedJSON"},
		{"no ResetType", `{}`, "Base.1.8.ActionParameterMissing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, "POST", path, tt.body, admin)
			if r.status != 400 {
				t.Fatalf("status = %d, want 400", r.status)
			}
			if got := get(r.doc, "error", "code"); got != "Base.1.8.GeneralError" {
				t.Errorf("code = %v", got)
			}
			if got := messageID(r.doc); got != tt.msgID {
				t.Errorf("MessageId = %q, want %q", got, tt.msgID)
			}
		})
	}
	if got := s.Resets("1"); len(got) != 0 || s.PowerState("1") != "On" {
		t.Errorf("rejected resets changed state: Resets %v, PowerState %s", got, s.PowerState("1"))
	}
}

func TestFaults(t *testing.T) {
	t.Run("hang", func(t *testing.T) {
		s, base := start(t, Options{Systems: 2})
		s.SetFault("1", FaultHang)
		c := &http.Client{Timeout: 200 * time.Millisecond}
		t0 := time.Now()
		_, err := send(c, base, "GET", s.SystemPath("1"), "", admin)
		if !isTimeout(err) {
			t.Fatalf("GET of a hung system: err = %v, want a timeout", err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("timeout took %v", d)
		}
		if _, err := send(c, base, "POST", s.SystemPath("1")+"/Actions/ComputerSystem.Reset", `{"ResetType":"ForceOff"}`, admin); !isTimeout(err) {
			t.Errorf("reset of a hung system: err = %v, want a timeout", err)
		}
		if s.PowerState("1") != "On" {
			t.Errorf("a hung system executed the reset")
		}
		if r := do(t, base, "GET", s.SystemPath("2"), "", admin); r.status != 200 {
			t.Errorf("other system = %d", r.status)
		}
		s.SetFault("1", FaultNone)
		if r := do(t, base, "GET", s.SystemPath("1"), "", admin); r.status != 200 {
			t.Errorf("after clearing the fault = %d", r.status)
		}
	})

	t.Run("hang released by Close", func(t *testing.T) {
		s := New(Options{})
		base := s.Start()
		s.SetFault("1", FaultHang)
		errc := make(chan error, 1)
		go func() {
			_, err := send(http.DefaultClient, base, "GET", s.SystemPath("1"), "", admin)
			errc <- err
		}()
		time.Sleep(100 * time.Millisecond)
		s.Close()
		select {
		case err := <-errc:
			if err == nil {
				t.Errorf("a hung request got an answer on Close; want a dropped connection")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not release a hung request")
		}
	})

	t.Run("500", func(t *testing.T) {
		s, base := start(t, Options{Systems: 2})
		s.SetFault("1", FaultServerError)
		for _, r := range []response{
			do(t, base, "GET", s.SystemPath("1"), "", admin),
			do(t, base, "GET", "/redfish/v1/Managers/1", "", admin),
			reset(t, s, base, "1", "ForceOff"),
			do(t, base, "GET", s.SystemPath("1"), "", noAuth),
		} {
			if r.status != 500 || messageID(r.doc) != "Base.1.8.InternalError" {
				t.Errorf("status %d, MessageId %q; want 500 InternalError", r.status, messageID(r.doc))
			}
		}
		if s.PowerState("1") != "On" || len(s.Resets("1")) != 0 {
			t.Errorf("a failing system executed the reset")
		}
		if r := do(t, base, "GET", s.SystemPath("2"), "", admin); r.status != 200 {
			t.Errorf("other system = %d", r.status)
		}
	})

	t.Run("401", func(t *testing.T) {
		s, base := start(t, Options{Systems: 2})
		s.SetFault("1", FaultUnauthorized)
		r := do(t, base, "GET", s.SystemPath("1"), "", admin)
		if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("GET = %d, WWW-Authenticate %q; want 401 with a challenge", r.status, r.header.Get("WWW-Authenticate"))
		}
		if r := reset(t, s, base, "1", "ForceOff"); r.status != 401 {
			t.Errorf("reset = %d, want 401", r.status)
		}
		if r := do(t, base, "GET", s.SystemPath("2"), "", admin); r.status != 200 {
			t.Errorf("other system = %d", r.status)
		}
	})

	t.Run("409-after-off", func(t *testing.T) {
		const window = 300 * time.Millisecond
		s, base := start(t, Options{ConflictWindow: window})
		s.SetFault("1", FaultConflictAfterOff)
		if r := reset(t, s, base, "1", "ForceOff"); r.status != 204 {
			t.Fatalf("ForceOff = %d", r.status)
		}
		t0 := time.Now()
		r := reset(t, s, base, "1", "On")
		if time.Since(t0) < window {
			if r.status != 409 || !strings.HasPrefix(messageID(r.doc), "Base.1.") ||
				!strings.HasSuffix(messageID(r.doc), ".ActionParameterValueConflict") {
				t.Fatalf("On right after ForceOff = %d %q, want 409 ActionParameterValueConflict", r.status, messageID(r.doc))
			}
			if s.PowerState("1") != "Off" {
				t.Fatalf("refused On powered the system on")
			}
		}
		time.Sleep(window)
		if r := reset(t, s, base, "1", "On"); r.status != 204 {
			t.Fatalf("On after the window = %d %v", r.status, r.doc)
		}
		if got := s.PowerState("1"); got != "On" {
			t.Errorf("PowerState = %s, want On", got)
		}
		if got := s.Resets("1"); !slices.Equal(got, []string{"ForceOff", "On"}) {
			t.Errorf("Resets = %v, want the 409 left out", got)
		}
	})

	t.Run("409 default window", func(t *testing.T) {
		s, base := start(t, Options{})
		s.SetFault("1", FaultConflictAfterOff)
		reset(t, s, base, "1", "GracefulShutdown")
		if r := reset(t, s, base, "1", "On"); r.status != 409 {
			t.Errorf("On within the default 2s window = %d, want 409", r.status)
		}
	})

	t.Run("stuck", func(t *testing.T) {
		s, base := start(t, Options{})
		s.SetFault("1", FaultStuck)
		if r := reset(t, s, base, "1", "ForceOff"); r.status != 204 {
			t.Fatalf("ForceOff = %d, want 204", r.status)
		}
		time.Sleep(20 * time.Millisecond)
		if got := readPower(t, s, base, "1"); got != "On" || s.PowerState("1") != "On" {
			t.Errorf("stuck system changed to %s", got)
		}
		if got := s.Resets("1"); !slices.Equal(got, []string{"ForceOff"}) {
			t.Errorf("Resets = %v", got)
		}
	})

	t.Run("flap", func(t *testing.T) {
		s, base := start(t, Options{})
		s.SetFault("1", FaultFlap)
		var seen []string
		for range 4 {
			seen = append(seen, readPower(t, s, base, "1"))
		}
		if !slices.Equal(seen, []string{"On", "Off", "On", "Off"}) {
			t.Errorf("reads = %v, want alternating", seen)
		}
		if s.PowerState("1") != "On" {
			t.Errorf("flap changed the real state")
		}
	})
}
