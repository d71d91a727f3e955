package pdusim

import "syscall"

func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		// Its own group, which pdu.pl joins, for kill to stop both.
		Setpgid: true,
		// Die with the test, even if that is killed with -9; pdu.pl then
		// reads the end of its input and exits.
		Pdeathsig: syscall.SIGKILL,
	}
}

// killGroup kills process group pgid: snmpd and pdu.pl.
func killGroup(pgid int) {
	syscall.Kill(-pgid, syscall.SIGKILL)
}
