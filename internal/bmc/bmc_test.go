package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		kind      Kind
		permanent bool
	}{{Transient, false}, {Auth, true}, {Unsupported, true}, {Config, true}}
	for _, tt := range tests {
		err := fmt.Errorf("activity: %w", &Error{Kind: tt.kind, Op: "get power state", BMC: "10.0.0.1:623", Err: errors.New("x")})
		if IsPermanent(err) != tt.permanent {
			t.Errorf("%s: IsPermanent = %v", tt.kind, !tt.permanent)
		}
		if k, ok := KindOf(err); !ok || k != tt.kind {
			t.Errorf("KindOf = %v, %v", k, ok)
		}
		if !strings.Contains(err.Error(), tt.kind.String()) || !strings.Contains(err.Error(), "10.0.0.1:623") {
			t.Errorf("message %q lacks kind or BMC", err)
		}
	}
	if IsPermanent(context.Canceled) {
		t.Error("a cancelled context is not a permanent BMC error")
	}
	if _, ok := KindOf(errors.New("plain")); ok {
		t.Error("KindOf(plain error) reported a kind")
	}
}

func TestWaitForState(t *testing.T) {
	reads := 0
	read := func(context.Context) (string, error) {
		reads++
		if reads < 3 {
			return "power on", nil
		}
		return "power off", nil
	}
	if err := WaitForState(context.Background(), read, "power off", time.Millisecond); err != nil || reads != 3 {
		t.Fatalf("err = %v after %d reads", err, reads)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	never := func(context.Context) (string, error) { return "power on", nil }
	if err := WaitForState(ctx, never, "power off", 5*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}

	boom := errors.New("boom")
	failing := func(context.Context) (string, error) { return "", boom }
	if err := WaitForState(context.Background(), failing, "power off", time.Millisecond); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the read's error", err)
	}
}

func TestScrub(t *testing.T) {
	if got := Scrub(errors.New("login admin:hunter2 failed"), "hunter2").Error(); got != "login admin:****** failed" {
		t.Fatalf("Scrub = %q", got)
	}
	plain := errors.New("no secret here")
	if Scrub(plain, "hunter2") != plain || Scrub(plain, "") != plain || Scrub(nil, "x") != nil {
		t.Fatal("Scrub changed an error without the secret")
	}
}
