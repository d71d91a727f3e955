package codec

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/testbed/devserver"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"
)

const (
	inputMarker   = "INPUT-MARKER-ipmi-password-7f3a"
	failureMarker = "FAILURE-MARKER-bmc-secret-91c2"
)

func echoSecretWorkflow(_ workflow.Context, secret string) (string, error) {
	return "result:" + secret, nil
}

func failSecretWorkflow(_ workflow.Context) error {
	return temporal.NewNonRetryableApplicationError("cannot log in with "+failureMarker, "BMCAuth", nil)
}

type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

func history(t *testing.T, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	return events
}

// TestEndToEnd runs workflows through a real dev server with encryption
// on, reads the histories back without the key (unreadable), then through
// the codec server, as the Web UI and `temporal --codec-endpoint` do
// (readable).
func TestEndToEnd(t *testing.T) {
	bin, err := devserver.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dev, err := devserver.Start(devserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Stop)
	addr := dev.Address
	keys := mustKeys(t, "k2:"+randKey(t)+",k1:"+randKey(t))
	dc := DataConverter(keys)
	enc, err := client.Dial(client.Options{HostPort: addr, Logger: quietLogger{}, DataConverter: dc, FailureConverter: FailureConverter(dc)})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	plain, err := client.Dial(client.Options{HostPort: addr, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	const queue = "codec-e2e"
	w := worker.New(enc, queue, worker.Options{})
	w.RegisterWorkflow(echoSecretWorkflow)
	w.RegisterWorkflow(failSecretWorkflow)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	okRun, err := enc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "codec-e2e-ok", TaskQueue: queue}, echoSecretWorkflow, inputMarker)
	if err != nil {
		t.Fatal(err)
	}
	var result string
	if err := okRun.Get(ctx, &result); err != nil || result != "result:"+inputMarker {
		t.Fatalf("echo workflow: %q, %v", result, err)
	}
	failRun, err := enc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "codec-e2e-fail", TaskQueue: queue}, failSecretWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	err = failRun.Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), failureMarker) {
		t.Fatalf("failing workflow: want an application error with the marker (decrypted by the codec client), got %v", err)
	}

	// Without the key: no marker anywhere in the histories.
	var payloads []*commonpb.Payload
	var sawInput, sawResult, sawFailure bool
	for _, id := range []string{"codec-e2e-ok", "codec-e2e-fail"} {
		for _, e := range history(t, plain, id) {
			s := e.String()
			for _, m := range []string{inputMarker, failureMarker} {
				if strings.Contains(s, m) {
					t.Errorf("history of %s, event %d (%s), readable without the key: %s", id, e.GetEventId(), e.GetEventType(), s)
				}
			}
			if a := e.GetWorkflowExecutionStartedEventAttributes(); a != nil && len(a.GetInput().GetPayloads()) > 0 {
				sawInput = true
				payloads = append(payloads, a.GetInput().GetPayloads()...)
			}
			if a := e.GetWorkflowExecutionCompletedEventAttributes(); a != nil {
				sawResult = true
				payloads = append(payloads, a.GetResult().GetPayloads()...)
			}
			if a := e.GetWorkflowExecutionFailedEventAttributes(); a != nil {
				sawFailure = true
				f := a.GetFailure()
				if strings.Contains(f.GetMessage(), failureMarker) || f.GetEncodedAttributes() == nil {
					t.Errorf("failure message not encoded: %v", f)
				}
				payloads = append(payloads, f.GetEncodedAttributes())
			}
		}
	}
	if !sawInput || !sawResult || !sawFailure {
		t.Fatalf("histories lack events: input %v result %v failure %v", sawInput, sawResult, sawFailure)
	}
	for _, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != MetadataEncryptedEncoding || string(p.GetMetadata()[MetadataKeyID]) != "k2" {
			t.Errorf("payload not encrypted with the current key: %v", p.GetMetadata())
		}
	}
	// The plain client cannot read the result either.
	var got string
	if err := plain.GetWorkflow(ctx, "codec-e2e-ok", "").Get(ctx, &got); err == nil {
		t.Errorf("plain client read the result: %q", got)
	}

	// Through the codec server: readable.
	srv := httptest.NewServer(Handler(keys, []string{"http://127.0.0.1:8233"}, BearerToken("e2e-token")))
	defer srv.Close()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/decode", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	req.Header.Set("Authorization", "Bearer e2e-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var respBody bytes.Buffer
	_, _ = respBody.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/decode: %d %s", resp.StatusCode, respBody.String())
	}
	var decoded commonpb.Payloads
	if err := protojson.Unmarshal(respBody.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, p := range decoded.GetPayloads() {
		all.Write(p.GetData())
		all.WriteByte('\n')
	}
	for _, m := range []string{`"` + inputMarker + `"`, `"result:` + inputMarker + `"`, failureMarker} {
		if !strings.Contains(all.String(), m) {
			t.Errorf("decoded payloads lack %s:\n%s", m, all.String())
		}
	}

	// The temporal CLI: plaintext with --codec-endpoint, not without.
	show := func(id string, extra ...string) string {
		args := append([]string{"workflow", "show", "--address", addr, "--namespace", "default", "--workflow-id", id, "-o", "json"}, extra...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("temporal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return withPayloadData(string(out))
	}
	codecArgs := []string{"--codec-endpoint", srv.URL, "--codec-auth", "Bearer e2e-token"}
	for _, tc := range []struct{ id, marker string }{{"codec-e2e-ok", inputMarker}, {"codec-e2e-fail", failureMarker}} {
		if out := show(tc.id); strings.Contains(out, tc.marker) {
			t.Errorf("temporal workflow show %s without --codec-endpoint shows the plaintext:\n%s", tc.id, out)
		}
		if out := show(tc.id, codecArgs...); !strings.Contains(out, tc.marker) {
			t.Errorf("temporal workflow show %s with --codec-endpoint lacks %s:\n%s", tc.id, tc.marker, out)
		}
	}
	// A wrong token gets nothing from the codec server.
	if out, err := exec.Command(bin, "workflow", "show", "--address", addr, "--workflow-id", "codec-e2e-ok", "-o", "json",
		"--codec-endpoint", srv.URL, "--codec-auth", "Bearer wrong").CombinedOutput(); err == nil && strings.Contains(withPayloadData(string(out)), inputMarker) {
		t.Errorf("wrong codec token decoded:\n%s", out)
	}
}

var jsonData = regexp.MustCompile(`"data":\s*"([A-Za-z0-9+/=]*)"`)

// withPayloadData appends to the JSON output of `temporal workflow show -o
// json` the base64-decoded "data" fields (payload bytes), so markers in
// payloads are found whether shown as text or as bytes.
func withPayloadData(out string) string {
	var b strings.Builder
	b.WriteString(out)
	for _, m := range jsonData.FindAllStringSubmatch(out, -1) {
		if d, err := base64.StdEncoding.DecodeString(m[1]); err == nil {
			b.WriteByte('\n')
			b.Write(d)
		}
	}
	return b.String()
}
