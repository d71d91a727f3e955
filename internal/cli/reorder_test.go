package cli

import (
	"flag"
	"slices"
	"testing"
)

func TestReorderLetsFlagsFollowTheNode(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("reason", "", "")
	fs.Int("timeout", 0, "")
	fs.Bool("wait", false, "")
	tests := []struct{ in, want []string }{
		{[]string{"n1", "--reason", "BMC swap"}, []string{"--reason", "BMC swap", "n1"}},
		{[]string{"n1", "--timeout", "30", "--wait"}, []string{"--timeout", "30", "--wait", "n1"}},
		{[]string{"--wait", "n1"}, []string{"--wait", "n1"}},
		{[]string{"n1", "--reason=x"}, []string{"--reason=x", "n1"}},
		{[]string{"n1", "-wait", "-timeout", "5"}, []string{"-wait", "-timeout", "5", "n1"}},
	}
	for _, tt := range tests {
		if got := reorder(fs, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("reorder(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
