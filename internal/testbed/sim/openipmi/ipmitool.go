package openipmi

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Ipmitool runs Debian's ipmitool against the BMC over lanplus, as an
// operator would, and returns its output: the check that what a test saw
// through metalpower is what the hardware says.
func (b BMC) Ipmitool(ctx context.Context, args ...string) (string, error) {
	base := []string{"-I", "lanplus", "-C", "3", "-H", b.Host, "-p", strconv.Itoa(b.Port),
		"-U", b.Username, "-P", b.Password, "-R", "1", "-N", "2"}
	out, err := exec.CommandContext(ctx, "ipmitool", append(base, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ipmitool %s on %s: %w: %s", strings.Join(args, " "), b.Addr(), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Power is `ipmitool chassis power status` as "on" or "off".
func (b BMC) Power(ctx context.Context) (string, error) {
	out, err := b.Ipmitool(ctx, "chassis", "power", "status")
	return strings.TrimPrefix(out, "Chassis Power is "), err
}
