package redfish

import (
	"net/http"
	"net/http/httptrace"
	"time"
)

// IdleConnTimeout closes a kept-alive connection to a BMC unused for this
// long. BMC web servers close idle connections on their own, often after
// 5 s (the lighttpd and Apache defaults several BMCs ship); closing ours
// first means a request rarely goes out on a connection the BMC is closing.
// A sync pass reuses connections; the next pass, minutes later, dials anew.
const IdleConnTimeout = 4 * time.Second

// retryStale sends a request once more when it failed on a kept-alive
// connection without any answer: the BMC closed the connection (its
// keep-alive timeout) as the request went out, so the request never
// reached it. Go's transport already does this for GETs and for requests it
// had not started writing; this covers the rest, the reset POSTs. The body
// must be rewindable (gofish sends byte readers). A failure on a new
// connection, or with the context done, is returned as it is.
type retryStale struct {
	next http.RoundTripper
	// agent, when set, replaces gofish's User-Agent, so a BMC's log says
	// which worker called (Options.UserAgent).
	agent string
}

func (t retryStale) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.agent != "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.agent)
	}
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		// Go's transport already resends these; a trace per read costs a
		// sync pass processor time for nothing.
		return t.next.RoundTrip(req)
	}
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
	resp, err := t.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err == nil || !reused || req.Context().Err() != nil {
		return resp, err
	}
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return resp, err
		}
		body, berr := req.GetBody()
		if berr != nil {
			return resp, err
		}
		retry.Body = body
	}
	return t.next.RoundTrip(retry)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport underneath.
func (t retryStale) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
