package codec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
)

func randKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func mustKeys(t testing.TB, s string) Keys {
	t.Helper()
	k, err := ParseKeys(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	keys := mustKeys(t, "k1:"+randKey(t))
	c := NewCodec(keys)
	dc := converter.GetDefaultDataConverter()
	in, err := dc.ToPayloads("ipmi-password-SECRET", map[string]int{"x": 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encode(in.Payloads)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range enc {
		if got := string(p.Metadata[converter.MetadataEncoding]); got != MetadataEncryptedEncoding {
			t.Errorf("encoding = %q", got)
		}
		if got := string(p.Metadata[MetadataKeyID]); got != "k1" {
			t.Errorf("key ID = %q", got)
		}
		if bytes.Contains(p.Data, []byte("SECRET")) {
			t.Errorf("ciphertext holds the plaintext")
		}
	}
	// Random nonce: the same plaintext encrypts differently.
	enc2, _ := c.Encode(in.Payloads[:1])
	if bytes.Equal(enc[0].Data, enc2[0].Data) {
		t.Error("two encryptions of the same payload are equal")
	}
	dec, err := c.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	var m map[string]int
	var n any
	if err := dc.FromPayloads(&commonpb.Payloads{Payloads: dec}, &s, &m, &n); err != nil {
		t.Fatal(err)
	}
	if s != "ipmi-password-SECRET" || m["x"] != 1 || n != nil {
		t.Errorf("round trip gave %q %v %v", s, m, n)
	}

	// Through the data converter.
	edc := DataConverter(keys)
	p, err := edc.ToPayload("SECRET-2")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p.Data, []byte("SECRET-2")) || string(p.Metadata["encoding"]) != MetadataEncryptedEncoding {
		t.Errorf("data converter did not encrypt: %v", p)
	}
	var s2 string
	if err := edc.FromPayload(p, &s2); err != nil || s2 != "SECRET-2" {
		t.Errorf("FromPayload = %q, %v", s2, err)
	}
}

func TestUnencryptedPassesThrough(t *testing.T) {
	c := NewCodec(mustKeys(t, "k1:"+randKey(t)))
	p, _ := converter.GetDefaultDataConverter().ToPayload("plain")
	dec, err := c.Decode([]*commonpb.Payload{p})
	if err != nil || dec[0] != p {
		t.Errorf("Decode(plain) = %v, %v", dec, err)
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := randKey(t), randKey(t)
	old := NewCodec(mustKeys(t, "k1:"+k1))
	in, _ := converter.GetDefaultDataConverter().ToPayloads("written-with-k1")
	enc1, err := old.Encode(in.Payloads)
	if err != nil {
		t.Fatal(err)
	}
	rotated := NewCodec(mustKeys(t, "k2:"+k2+", k1:"+k1))
	dec, err := rotated.Decode(enc1)
	if err != nil {
		t.Fatalf("rotated codec cannot read k1 payloads: %v", err)
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayloads(&commonpb.Payloads{Payloads: dec}, &s); err != nil || s != "written-with-k1" {
		t.Fatalf("got %q, %v", s, err)
	}
	enc2, _ := rotated.Encode(in.Payloads)
	if got := string(enc2[0].Metadata[MetadataKeyID]); got != "k2" {
		t.Errorf("rotated codec encrypts with %q, want k2", got)
	}
	// The old deployment (k1 only) cannot read k2 payloads, and says why.
	_, err = old.Decode(enc2)
	if err == nil || !strings.Contains(err.Error(), `unknown encryption key ID "k2"`) {
		t.Errorf("Decode with unknown key ID: %v", err)
	}
}

func TestTamperedAndRelabelled(t *testing.T) {
	k1, k2 := randKey(t), randKey(t)
	c := NewCodec(mustKeys(t, "k1:"+k1+",k2:"+k2))
	in, _ := converter.GetDefaultDataConverter().ToPayloads("secret")
	enc, _ := c.Encode(in.Payloads)

	tampered := &commonpb.Payload{Metadata: enc[0].Metadata, Data: bytes.Clone(enc[0].Data)}
	tampered.Data[len(tampered.Data)-1] ^= 1
	if _, err := c.Decode([]*commonpb.Payload{tampered}); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("tampered: %v", err)
	}
	short := &commonpb.Payload{Metadata: enc[0].Metadata, Data: enc[0].Data[:5]}
	if _, err := c.Decode([]*commonpb.Payload{short}); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("short: %v", err)
	}
	relabelled := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte(MetadataEncryptedEncoding), MetadataKeyID: []byte("k2")}, Data: enc[0].Data}
	if _, err := c.Decode([]*commonpb.Payload{relabelled}); err == nil {
		t.Error("payload relabelled with another key ID decrypted")
	}
	wrongKey := NewCodec(mustKeys(t, "k1:"+k2))
	if _, err := wrongKey.Decode(enc); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong key: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	good, other := randKey(t), randKey(t)
	k, err := ParseKeys(" k2:" + good + " , k1:" + strings.TrimRight(other, "=") + " ")
	if err != nil {
		t.Fatal(err)
	}
	if k.Current != "k2" || len(k.ByID) != 2 || len(k.ByID["k1"]) != 32 {
		t.Errorf("parsed %v", k)
	}
	const shown = `codec.Keys{Current: "k2", IDs: [k2 k1]}`
	if s := fmt.Sprintf("%v|%+v|%#v|%s", k, k, k, k); s != strings.Repeat(shown+"|", 3)+shown {
		t.Errorf("printing Keys: %s", s)
	}

	short := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"k1:" + good + ",", "entry 2 is empty"},
		{"k1:" + good + ",k1:" + other, `entry 2: key ID "k1" appears twice`},
		{good, "entry 1 is not <key-id>:<base64 key>"},
		{":" + good, "entry 1 has an empty key ID"},
		{"k1:" + short, `entry 1 (key ID "k1"): key decodes to 16 bytes, want 32`},
		{"k1:" + good + ",old:not*base64!!", `entry 2 (key ID "old"): key is not valid base64`},
		{"k1:", `entry 1 (key ID "k1"): key is empty`},
		{"bad id:" + good, "entry 1: key ID must be"},
	} {
		_, err := ParseKeys(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKeys(%q) error = %v, want %q", tc.in, err, tc.want)
			continue
		}
		for _, secret := range []string{good, other, short, "not*base64"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("ParseKeys error echoes key material: %v", err)
			}
		}
	}
}

func TestInvalidKeysFail(t *testing.T) {
	c := NewCodec(Keys{Current: "k9", ByID: map[string][]byte{"k1": make([]byte, 32)}})
	if _, err := c.Encode(nil); err == nil || !strings.Contains(err.Error(), `current key ID "k9" has no key`) {
		t.Errorf("Encode: %v", err)
	}
	c = NewCodec(Keys{Current: "k1", ByID: map[string][]byte{"k1": make([]byte, 16)}})
	if _, err := c.Decode(nil); err == nil || !strings.Contains(err.Error(), "16 bytes, want 32") {
		t.Errorf("Decode: %v", err)
	}
}

func TestFailureConverterEncryptsMessage(t *testing.T) {
	dc := DataConverter(mustKeys(t, "k1:"+randKey(t)))
	fc := FailureConverter(dc)
	f := fc.ErrorToFailure(temporal.NewApplicationError("bmc password is MARKER-FAIL", "Bad"))
	if strings.Contains(f.String(), "MARKER-FAIL") {
		t.Errorf("failure shows the message: %v", f)
	}
	back := fc.FailureToError(f)
	if !strings.Contains(back.Error(), "MARKER-FAIL") {
		t.Errorf("decoded failure = %v", back)
	}
}

func postPayloads(t *testing.T, h http.Handler, path, origin, auth string, payloads []*commonpb.Payload) *httptest.ResponseRecorder {
	t.Helper()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Namespace", "default")
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeResponse(t *testing.T, w *httptest.ResponseRecorder) []*commonpb.Payload {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("response %s: %v", w.Body.String(), err)
	}
	return out.Payloads
}

func TestHandler(t *testing.T) {
	const ui = "http://127.0.0.1:8233"
	keys := mustKeys(t, "k1:"+randKey(t))
	h := Handler(keys, []string{ui + "/"}, BearerToken("tok"))
	plain, _ := converter.GetDefaultDataConverter().ToPayloads("HANDLER-SECRET")

	// Preflight from the UI: 200 with the CORS headers, no auth needed.
	r := httptest.NewRequest(http.MethodOptions, "/decode", nil)
	r.Header.Set("Origin", ui)
	r.Header.Set("Access-Control-Request-Method", "POST")
	r.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace,authorization")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("preflight status %d", w.Code)
	}
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":      ui,
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Headers":     "content-type,x-namespace,authorization",
		"Access-Control-Allow-Methods":     "POST, OPTIONS",
	} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("preflight %s = %q, want %q", k, got, v)
		}
	}
	// Preflight from elsewhere: no CORS headers, 403.
	r.Header.Set("Origin", "http://evil.example")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign preflight: %d %v", w.Code, w.Header())
	}

	// Without / with a wrong token: 401, nothing encoded.
	for _, auth := range []string{"", "Bearer nope", "tok"} {
		w = postPayloads(t, h, "/encode", ui, auth, plain.Payloads)
		if w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "payloads") {
			t.Errorf("auth %q: %d %s", auth, w.Code, w.Body.String())
		}
		if w.Header().Get("Access-Control-Allow-Origin") != ui {
			t.Errorf("401 without CORS headers: the UI cannot read it")
		}
	}

	// /encode then /decode.
	w = postPayloads(t, h, "/encode", ui, "Bearer tok", plain.Payloads)
	enc := decodeResponse(t, w)
	if w.Header().Get("Access-Control-Allow-Origin") != ui || w.Header().Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("POST CORS headers: %v", w.Header())
	}
	if len(enc) != 1 || string(enc[0].Metadata[MetadataKeyID]) != "k1" || bytes.Contains(enc[0].Data, []byte("HANDLER-SECRET")) {
		t.Fatalf("/encode gave %v", enc)
	}
	dec := decodeResponse(t, postPayloads(t, h, "/decode", "", "Bearer tok", enc))
	var s string
	if err := converter.GetDefaultDataConverter().FromPayloads(&commonpb.Payloads{Payloads: dec}, &s); err != nil || s != "HANDLER-SECRET" {
		t.Errorf("/decode gave %q, %v", s, err)
	}
	// A prefix works (endpoint "https://host/codec").
	decodeResponse(t, postPayloads(t, h, "/codec/decode", "", "Bearer tok", enc))

	// Errors: bad payload, unknown path, wrong method.
	enc[0].Data[len(enc[0].Data)-1] ^= 1
	if w := postPayloads(t, h, "/decode", "", "Bearer tok", enc); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "authentication failed") {
		t.Errorf("tampered /decode: %d %s", w.Code, w.Body.String())
	}
	if w := postPayloads(t, h, "/other", "", "Bearer tok", enc); w.Code != http.StatusNotFound {
		t.Errorf("/other: %d", w.Code)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/decode", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
	// A foreign origin's POST gets no CORS headers (its page cannot read the answer).
	if w := postPayloads(t, h, "/encode", "http://evil.example", "Bearer tok", plain.Payloads); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin got CORS headers")
	}

	// No authorize function: open (loopback use).
	open := Handler(keys, nil, nil)
	decodeResponse(t, postPayloads(t, open, "/encode", "", "", plain.Payloads))
}

func TestBearerTokenEmpty(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/decode", nil)
	r.Header.Set("Authorization", "Bearer ")
	if BearerToken("")(r) {
		t.Error("empty token accepted")
	}
}

func TestConverters(t *testing.T) {
	if dc, fc, err := Converters(" "); dc != nil || fc != nil || err != nil {
		t.Errorf("Converters(empty) = %v %v %v", dc, fc, err)
	}
	if _, _, err := Converters("k1:short"); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("Converters(bad) error = %v", err)
	}
	dc, fc, err := Converters("k1:" + randKey(t))
	if err != nil || dc == nil || fc == nil {
		t.Fatalf("Converters = %v %v %v", dc, fc, err)
	}
	p, _ := dc.ToPayload("x")
	if string(p.Metadata["encoding"]) != MetadataEncryptedEncoding {
		t.Errorf("not encrypted: %v", p)
	}
}
