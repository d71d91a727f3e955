package codec

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"go.temporal.io/sdk/converter"
)

// MaxRequestBytes bounds a codec server request body.
const MaxRequestBytes = 16 << 20

// Handler is the codec server: POST /encode and POST /decode (any path
// ending so, as the SDK's handler does) with the payloads as JSON, the
// protocol of the Temporal Web UI's "codec endpoint" and of
// `temporal --codec-endpoint`.
//
// Browsers from allowOrigins (exact origins such as
// "http://127.0.0.1:8233", the Web UI) get CORS headers, credentials
// included; preflight OPTIONS requests from them answer 200 without
// authorization (browsers send none), from other origins 403. authorize,
// when not nil, is asked for every POST; false answers 401 and nothing is
// decoded. Without authorize anyone who reaches the endpoint can decrypt:
// only do that on a loopback or otherwise protected listener.
func Handler(keys Keys, allowOrigins []string, authorize func(*http.Request) bool) http.Handler {
	codecHandler := converter.NewPayloadCodecHTTPHandler(NewCodec(keys))
	origins := slices.Clone(allowOrigins)
	for i, o := range origins {
		origins[i] = strings.TrimRight(strings.TrimSpace(o), "/")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && slices.Contains(origins, origin)
		if origin != "" {
			w.Header().Add("Vary", "Origin")
		}
		if allowed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "content-type,x-namespace,authorization")
			h.Set("Access-Control-Max-Age", "600")
		}
		if r.Method == http.MethodOptions {
			if !allowed {
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			w.WriteHeader(http.StatusOK)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/encode") && !strings.HasSuffix(r.URL.Path, "/decode") {
			http.NotFound(w, r)
			return
		}
		if authorize != nil && !authorize(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metalpower codec"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
		codecHandler.ServeHTTP(w, r)
	})
}

// BearerToken is an authorize function for Handler accepting requests
// whose Authorization header is "Bearer <token>" (what
// `temporal --codec-auth "Bearer <token>"` and a Web UI configured to pass
// its access token send). An empty token accepts nothing.
func BearerToken(token string) func(*http.Request) bool {
	want := []byte("Bearer " + token)
	return func(r *http.Request) bool {
		if token == "" {
			return false
		}
		got := []byte(r.Header.Get("Authorization"))
		return subtle.ConstantTimeCompare(got, want) == 1
	}
}
