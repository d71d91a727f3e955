package nova

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
)

// Error is a failed notification. Permanent errors will fail the same way
// if retried (Nova rejected the event, the credentials or configuration
// are wrong, the answer makes no sense); the rest may succeed later.
//
// Msg never contains the password, application credential secret or
// token, because it ends up in logs and workflow histories.
type Error struct {
	Permanent  bool
	HTTPStatus int // HTTP status of the answer that failed; 0 if none came
	EventCode  int // per-event code Nova gave the event; 0 if none
	Msg        string
	err        error // cause, for errors.Is and errors.As
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.err }

// IsPermanent reports whether err is an *Error (possibly wrapped) that
// retrying cannot fix.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// eventCodeMeaning explains the per-event codes of
// nova/api/openstack/compute/server_external_events.py.
var eventCodeMeaning = map[int]string{
	http.StatusBadRequest:          "the event lacks a tag",
	http.StatusNotFound:            "no such instance",
	http.StatusUnprocessableEntity: "the instance has no compute host yet",
}

// eventResult reads Nova's answer to a one-event request that it accepted
// at HTTP level (200 or 207): the outcome is events[0].code. Like Ironic,
// an answer that cannot be read is a permanent failure, not a success.
func eventResult(status int, body []byte) *Error {
	var doc struct {
		Events []*struct {
			Code   *int   `json:"code"`
			Status string `json:"status"`
		} `json:"events"`
	}
	err := json.Unmarshal(body, &doc)
	if err != nil || len(doc.Events) == 0 || doc.Events[0] == nil || doc.Events[0].Code == nil {
		return &Error{
			Permanent:  true,
			HTTPStatus: status,
			Msg:        fmt.Sprintf("invalid response from Nova (HTTP %d): %s", status, excerpt(body)),
			err:        err,
		}
	}
	code := *doc.Events[0].Code
	if code < 400 {
		return nil
	}
	msg := fmt.Sprintf("Nova rejected the event with code %d", code)
	if meaning, ok := eventCodeMeaning[code]; ok {
		msg += " (" + meaning + ")"
	}
	return &Error{Permanent: true, HTTPStatus: status, EventCode: code, Msg: msg}
}

// classify turns an error from gophercloud or the HTTP client into an
// *Error. Transport failures and server-side trouble (5xx, 429, 408) are
// transient; everything else is a rejection or a configuration mistake
// and permanent.
func classify(err error) *Error {
	// Re-authentication failed: the verdict is Keystone's, not Nova's 401.
	var reauth *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &reauth) {
		e := classify(reauth.ErrReauth)
		e.Msg = "token expired and re-authenticating failed: " + e.Msg
		return e
	}

	var status gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &status) {
		msg := fmt.Sprintf("%s %s: HTTP %d", status.Method, redactURL(status.URL), status.Actual)
		if s := errorMessage(status.Body); s != "" {
			msg += ": " + s
		}
		var after *gophercloud.ErrErrorAfterReauthentication
		if status.Actual == http.StatusUnauthorized && errors.As(err, &after) {
			msg += " (again after re-authenticating)"
		}
		return &Error{Permanent: !retryableStatus(status.Actual), HTTPStatus: status.Actual, Msg: msg, err: err}
	}

	switch {
	case isCertificateError(err):
		// A TLS setup that does not verify will not verify next time.
		return &Error{Permanent: true, Msg: err.Error(), err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &Error{Msg: err.Error(), err: err}
	}
	var urlErr *url.Error
	var netErr net.Error
	if errors.As(err, &urlErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// Refused, reset, cut short, timed out, DNS: the network or the
		// service is down.
		return &Error{Msg: err.Error(), err: err}
	}

	var endpoint *gophercloud.ErrEndpointNotFound
	var service *gophercloud.ErrServiceNotFound
	var iface *openstack.ErrInvalidAvailabilityProvided
	if errors.As(err, &endpoint) || errors.As(err, &service) || errors.As(err, &iface) {
		return &Error{
			Permanent: true,
			Msg:       err.Error() + " (check [nova] region_name and interface, and that the token is scoped to a project)",
			err:       err,
		}
	}
	// Input errors from gophercloud, undecodable Keystone answers and the
	// like: retrying changes nothing.
	return &Error{Permanent: true, Msg: err.Error(), err: err}
}

// retryableStatus reports whether an HTTP status says "not now" rather
// than "no".
func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

func isCertificateError(err error) bool {
	var verify *tls.CertificateVerificationError
	var authority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError // https:// URL of a plain HTTP server
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &record)
}

// errorMessage extracts the message of an OpenStack error body, which is
// {"<kind>": {"message": ...}} for Nova and {"error": {"message": ...}}
// for Keystone, falling back to an excerpt of the raw body.
func errorMessage(body []byte) string {
	var doc map[string]struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &doc) == nil {
		for _, v := range doc {
			if v.Message != "" {
				return excerpt([]byte(v.Message))
			}
		}
	}
	return excerpt(body)
}

// excerpt shortens a body for an error message.
func excerpt(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = s[:max] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// redactURL hides a password in the user info of u, if any.
func redactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	return parsed.Redacted()
}
