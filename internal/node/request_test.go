package node

import (
	"strings"
	"testing"
)

func TestCheckPowerRequest(t *testing.T) {
	zero, neg, ten := 0, -3, 10
	tests := []struct {
		name      string
		provision string
		noOff     bool
		target    string
		timeout   *int
		want      Refusal
	}{
		{"power off", Active, false, PowerOff, nil, Allowed},
		{"reboot with timeout", Active, false, Reboot, &ten, Allowed},
		{"timeout zero", Active, false, PowerOff, &zero, RefusedTimeout},
		{"negative timeout", Active, false, PowerOff, &neg, RefusedTimeout},
		{"unknown target", Active, false, "explode", nil, RefusedTarget},
		{"state, not target", Active, false, "error", nil, RefusedTarget},
		{"bad timeout before bad target", Active, false, "explode", &zero, RefusedTimeout},
		{"cleaning", Cleaning, false, PowerOn, nil, RefusedCleaning},
		{"clean wait", CleanWait, false, PowerOn, nil, RefusedCleaning},
		{"bad target before cleaning", Cleaning, false, "explode", nil, RefusedTarget},
		{"disable_power_off: off", Active, true, PowerOff, nil, RefusedPowerOff},
		{"disable_power_off: soft off", Active, true, SoftPowerOff, nil, RefusedPowerOff},
		{"disable_power_off: on", Active, true, PowerOn, nil, Allowed},
		{"disable_power_off: reboot ends on", Active, true, Reboot, nil, Allowed},
		{"cleaning before disable_power_off", Cleaning, true, PowerOff, nil, RefusedCleaning},
		{"outlet: soft power off", Active, false, SoftPowerOff, nil, RefusedUnsupported},
		{"outlet: soft reboot", Active, false, SoftReboot, nil, RefusedUnsupported},
		{"outlet: unsupported before cleaning", Cleaning, false, SoftReboot, nil, RefusedUnsupported},
		{"outlet: bad target before unsupported", Active, false, "explode", nil, RefusedTarget},
		{"outlet: reboot", Active, false, Reboot, nil, Allowed},
		{"outlet: power off", Active, false, PowerOff, nil, Allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			driver := fakeDriver
			if strings.HasPrefix(tt.name, "outlet: ") {
				driver = fakeOutlet
			}
			n := New("", "n", driver, nil)
			n.ProvisionState, n.DisablePowerOff = tt.provision, tt.noOff
			if got := CheckPowerRequest(n, tt.target, tt.timeout); got != tt.want {
				t.Fatalf("CheckPowerRequest = %d, want %d", got, tt.want)
			}
		})
	}
	if OptionalTimeout(0) != nil || *OptionalTimeout(30) != 30 {
		t.Fatal("OptionalTimeout: 0 means not given")
	}
}
