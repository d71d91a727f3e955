package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeRequests feeds arbitrary bodies to the request decoders: each
// either decodes or answers 400/413 with Ironic's error body, never
// panics, and never accepts a body with unknown fields.
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range []string{
		`{"target":"power on"}`, `{"target":"soft power off","timeout":2}`, `{"target":1}`, `{`, `[]`, `null`,
		`{"driver":"ipmi","driver_info":{"ipmi_address":"h"}}`, `[{"op":"replace","path":"/name","value":"x"}]`,
		`{"target":"power on"} trailing`, `{"target":"power on","unknown":true}`, "\x00\xff",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		targets := []any{&powerRequest{}, &createRequest{}, &[]patchOp{}}
		for _, v := range targets {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPut, "/", strings.NewReader(body))
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
			if decodeBody(w, r, v) {
				if w.Code != http.StatusOK || w.Body.Len() != 0 {
					t.Fatalf("decoded, yet answered %d", w.Code)
				}
				continue
			}
			if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("refused with %d", w.Code)
			}
			var outer struct {
				ErrorMessage string `json:"error_message"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &outer); err != nil || !json.Valid([]byte(outer.ErrorMessage)) {
				t.Fatalf("not Ironic's error body: %q", w.Body.String())
			}
		}
	})
}

// FuzzApplyPatch applies arbitrary patch operations to a node: every op
// is applied or refused with a patch error, never a panic.
func FuzzApplyPatch(f *testing.F) {
	f.Add("replace", "/name", `"x"`)
	f.Add("add", "/driver_info/ipmi_port", `623`)
	f.Add("remove", "/extra/k", ``)
	f.Add("replace", "/power_state", `"power off"`)
	f.Add("add", "/driver_info", `{"a":1}`)
	f.Fuzz(func(t *testing.T, op, path, value string) {
		n := newTestNode()
		var raw json.RawMessage
		if value != "" {
			raw = json.RawMessage(value)
		}
		err := applyOp(n, patchOp{Op: op, Path: path, Value: raw}, MaxVersion)
		if err != nil {
			if _, ok := err.(*patchError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
		}
	})
}
