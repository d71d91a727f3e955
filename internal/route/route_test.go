package route

import (
	"context"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
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
