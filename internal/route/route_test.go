package route

import "testing"

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
