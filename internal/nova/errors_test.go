package nova

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/metalpower/metalpower/internal/config"
)

// The cases of ironic's NovaApiTestCase.test_power_update and
// test_power_update_invalid_reponse_format, plus the other codes Nova
// can give an event.
func TestEventResult(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantErr   bool
		eventCode int
	}{
		{"200 with code 200", 200, `{"events":[{"name":"power-update","server_uuid":"u","tag":"POWER_ON","status":"completed","code":200}]}`, false, 0},
		{"207 with code 200", 207, `{"events":[{"status":"completed","code":200}]}`, false, 0},
		{"207 with code 400", 207, `{"events":[{"status":"failed","code":400}]}`, true, 400},
		{"207 with code 404", 207, `{"events":[{"status":"failed","code":404}]}`, true, 404},
		{"207 with code 422", 207, `{"events":[{"status":"failed","code":422}]}`, true, 422},
		{"200 with code 500", 200, `{"events":[{"code":500}]}`, true, 500},
		{"empty object", 207, `{}`, true, 0},
		{"no events", 207, `{"events":[]}`, true, 0},
		{"null events", 207, `{"events":null}`, true, 0},
		{"event without code", 207, `{"events":[{}]}`, true, 0},
		{"null event", 207, `{"events":[null]}`, true, 0},
		{"code not a number", 200, `{"events":[{"code":"200"}]}`, true, 0},
		{"not JSON", 200, `<html>ok</html>`, true, 0},
		{"empty body", 200, ``, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := eventResult(tt.status, []byte(tt.body))
			if !tt.wantErr {
				if e != nil {
					t.Fatalf("eventResult = %v, want nil", e)
				}
				return
			}
			if e == nil {
				t.Fatal("eventResult = nil, want an error")
			}
			if !e.Permanent || e.HTTPStatus != tt.status || e.EventCode != tt.eventCode {
				t.Errorf("eventResult = %+v, want permanent, HTTP %d, event code %d", e, tt.status, tt.eventCode)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	httpErr := func(status int, body string) error {
		return gophercloud.ErrUnexpectedResponseCode{
			Method: "POST", URL: "http://nova/v2.1/os-server-external-events",
			Actual: status, Body: []byte(body),
		}
	}
	refused := &url.Error{Op: "Post", URL: "http://nova/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name       string
		err        error
		permanent  bool
		httpStatus int
		wantMsg    string
	}{
		{"400", httpErr(400, `{"badRequest":{"code":400,"message":"Invalid input"}}`), true, 400, "HTTP 400: Invalid input"},
		{"401", httpErr(401, `{"error":{"code":401,"message":"The request you have made requires authentication."}}`), true, 401, "requires authentication"},
		{"403 policy", httpErr(403, `{"forbidden":{"code":403,"message":"Policy doesn't allow"}}`), true, 403, "Policy"},
		{"legacy whole-request 404", httpErr(404, ``), true, 404, "(empty body)"},
		{"406 microversion", httpErr(406, ``), true, 406, "HTTP 406"},
		{"408", httpErr(408, ``), false, 408, "HTTP 408"},
		{"429", httpErr(429, ``), false, 429, "HTTP 429"},
		{"500", httpErr(500, `<html>oops</html>`), false, 500, "<html>oops</html>"},
		{"502", httpErr(502, ``), false, 502, "HTTP 502"},
		{"503", httpErr(503, ``), false, 503, "HTTP 503"},
		{"401 after reauth", &gophercloud.ErrErrorAfterReauthentication{ErrOriginal: httpErr(401, ``)}, true, 401, "again after re-authenticating"},
		{"503 after reauth", &gophercloud.ErrErrorAfterReauthentication{ErrOriginal: httpErr(503, ``)}, false, 503, "HTTP 503"},
		{"reauth rejected", &gophercloud.ErrUnableToReauthenticate{ErrOriginal: httpErr(401, ``), ErrReauth: httpErr(401, ``)}, true, 401, "re-authenticating failed"},
		{"reauth unreachable", &gophercloud.ErrUnableToReauthenticate{ErrOriginal: httpErr(401, ``), ErrReauth: refused}, false, 0, "connection refused"},
		{"connection refused", refused, false, 0, "connection refused"},
		{"connection reset", &url.Error{Op: "Post", URL: "http://nova/", Err: syscall.ECONNRESET}, false, 0, "reset"},
		{"closed without answer", &url.Error{Op: "Post", URL: "http://nova/", Err: io.EOF}, false, 0, "EOF"},
		{"answer cut short", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), false, 0, "unexpected EOF"},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), false, 0, "deadline"},
		{"canceled", context.Canceled, false, 0, "canceled"},
		{"unknown CA", &url.Error{Op: "Post", URL: "https://nova/", Err: x509.UnknownAuthorityError{}}, true, 0, "certificate"},
		{"endpoint not found", &gophercloud.ErrEndpointNotFound{}, true, 0, "catalog"},
		{"bad input", gophercloud.ErrMissingInput{Argument: "Password"}, true, 0, "Password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := classify(tt.err)
			if e.Permanent != tt.permanent || e.HTTPStatus != tt.httpStatus {
				t.Errorf("classify = %+v, want permanent %v, HTTP %d", e, tt.permanent, tt.httpStatus)
			}
			if !strings.Contains(e.Msg, tt.wantMsg) {
				t.Errorf("message %q lacks %q", e.Msg, tt.wantMsg)
			}
		})
	}
}

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("other"), false},
		{&Error{Permanent: true}, true},
		{&Error{Permanent: false}, false},
		{fmt.Errorf("activity: %w", &Error{Permanent: true}), true},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	n := &Notifier{cfg: config.Nova{Password: "s3cret-pw", ApplicationCredentialSecret: "app-secret-x"}}
	msg := n.redact("user:s3cret-pw@ and app-secret-x and again s3cret-pw", nil)
	if strings.Contains(msg, "s3cret-pw") || strings.Contains(msg, "app-secret-x") {
		t.Errorf("redact left a secret in %q", msg)
	}
	if got := redactURL("http://user:s3cret-pw@keystone/v3"); strings.Contains(got, "s3cret-pw") {
		t.Errorf("redactURL = %q", got)
	}
}
