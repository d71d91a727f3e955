package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestQueue(t *testing.T) {
	for _, tc := range []struct{ base, group, want string }{
		{"metalpower", "", "metalpower"},
		{"metalpower", "rack-a", "metalpower.rack-a"},
		{"mp", "segment_2.east", "mp.segment_2.east"},
		{"metalpower", "Rack-A", "metalpower.rack-a"},
	} {
		if got := Queue(tc.base, tc.group); got != tc.want {
			t.Errorf("Queue(%q, %q) = %q, want %q", tc.base, tc.group, got, tc.want)
		}
	}
}

// pollers answers DescribeTaskQueue with pollers last seen at the given
// times, and counts the calls.
type pollers struct {
	seen  []time.Time
	calls int
}

func (p *pollers) DescribeTaskQueue(context.Context, string, enumspb.TaskQueueType) (*workflowservice.DescribeTaskQueueResponse, error) {
	p.calls++
	resp := &workflowservice.DescribeTaskQueueResponse{}
	for _, t := range p.seen {
		resp.Pollers = append(resp.Pollers, &taskqueuepb.PollerInfo{LastAccessTime: timestamppb.New(t)})
	}
	return resp, nil
}

func TestLive(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name string
		seen []time.Time
		want bool
	}{
		{"no poller", nil, false},
		{"polled a minute ago", []time.Time{now.Add(-time.Minute)}, true},
		{"polled three minutes ago", []time.Time{now.Add(-3 * time.Minute)}, false},
		{"the newest poll counts", []time.Time{now.Add(-3 * time.Minute), now.Add(-10 * time.Second)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pollers{seen: tc.seen}
			if got, err := Live(context.Background(), p, "q"); err != nil || got != tc.want {
				t.Fatalf("Live = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestLiveKeepsOnlyLive: a live answer holds until the window after the
// poll seen ends, without asking again; a queue not live is asked every
// time, so a worker that starts counts at once.
func TestLiveKeepsOnlyLive(t *testing.T) {
	ctx := context.Background()
	p := &pollers{}
	for range 2 {
		if live, _ := Live(ctx, p, "q"); live {
			t.Fatal("a queue without pollers is live")
		}
	}
	if p.calls != 2 {
		t.Fatalf("a queue not live was asked %d times in 2 calls, want 2", p.calls)
	}
	p.seen = []time.Time{time.Now()}
	for range 3 {
		if live, _ := Live(ctx, p, "q"); !live {
			t.Fatal("a queue polled just now is not live")
		}
	}
	if p.calls != 3 {
		t.Fatalf("a live queue was asked %d times in 3 more calls, want 1", p.calls-2)
	}
	// An answer is kept per client: another client asks for itself.
	other := &pollers{}
	if live, _ := Live(ctx, other, "q"); live || other.calls != 1 {
		t.Fatalf("another client: live %v after %d calls", live, other.calls)
	}
	// A poll seen near the window's end is not kept past it.
	late := &pollers{seen: []time.Time{time.Now().Add(-LiveWindow + 50*time.Millisecond)}}
	if live, _ := Live(ctx, late, "q"); !live {
		t.Fatal("a poll inside the window is not live")
	}
	time.Sleep(100 * time.Millisecond)
	late.seen = nil
	if live, _ := Live(ctx, late, "q"); live || late.calls != 2 {
		t.Fatalf("past the window: live %v after %d calls", live, late.calls)
	}
}

func TestNoWorkerError(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  *NoWorkerError
		want string
	}{
		{"a group", &NoWorkerError{Group: "segment-b", Driver: "redfish", Queue: "metalpower.segment-b"},
			`No valid host was found. Reason: No conductor service registered which supports driver redfish for conductor group "segment-b". ` +
				`Start a worker with [conductor] conductor_group = "segment-b": it polls task queue metalpower.segment-b.`},
		{"the default group", &NoWorkerError{Driver: "ipmi", Queue: "metalpower"},
			`No valid host was found. Reason: No conductor service registered which supports driver ipmi for conductor group "". ` +
				`Start a worker of the default conductor group (empty [conductor] conductor_group): it polls task queue metalpower.`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Fatalf("Error() =\n%s\nwant\n%s", got, tt.want)
			}
			got, ok := AsNoWorker(tt.err.Application())
			if !ok || got.Group != tt.err.Group || got.Queue != tt.err.Queue {
				t.Fatalf("AsNoWorker(Application()) = %+v, %v", got, ok)
			}
			var app *temporal.ApplicationError
			if !errors.As(tt.err.Application(), &app) || app.Message() != tt.want || !app.NonRetryable() || app.Type() != NoWorkerType {
				t.Fatalf("Application() = %v", app)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	ctx := context.Background()
	live := &pollers{seen: []time.Time{time.Now()}}
	if q, err := Route(ctx, live, "mp", "Rack-A", "redfish"); err != nil || q != "mp.rack-a" {
		t.Fatalf("Route with a live worker = %q, %v", q, err)
	}
	q, err := Route(ctx, &pollers{}, "mp", "rack-b", "ipmi")
	if nw, ok := AsNoWorker(err); !ok || q != "" || nw.Queue != "mp.rack-b" || nw.Group != "rack-b" || nw.Driver != "ipmi" {
		t.Fatalf("Route with no worker = %q, %v", q, err)
	}
	// Temporal unreachable: the queue, so that the start that follows
	// fails on its own.
	if q, err := Route(ctx, unreachable{}, "mp", "rack-c", "ipmi"); err != nil || q != "mp.rack-c" {
		t.Fatalf("Route with Temporal unreachable = %q, %v", q, err)
	}
}

type unreachable struct{}

func (unreachable) DescribeTaskQueue(context.Context, string, enumspb.TaskQueueType) (*workflowservice.DescribeTaskQueueResponse, error) {
	return nil, errors.New("connection refused")
}
