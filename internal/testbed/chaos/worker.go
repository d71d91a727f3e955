package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Supervisor runs the worker binary as a separate process and starts it
// again whenever it exits, as systemd's Restart=always would: a worker
// that cannot reach Temporal or the node store at start exits, and comes
// back a moment later. Kill sends SIGKILL, the crash the test injects.
type Supervisor struct {
	bin    string
	env    []string
	logDir string
	// RestartDelay is the pause before a new process starts.
	RestartDelay time.Duration

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd exits
	starts   int
	kills    int
	exits    []string // how processes ended, in order
	stopping bool
	done     chan struct{}
}

// StartSupervisor starts the first worker process; env is its whole
// environment. Each process logs to worker-<n>.log in logDir.
func StartSupervisor(bin string, env []string, logDir string) (*Supervisor, error) {
	s := &Supervisor{bin: bin, env: env, logDir: logDir, RestartDelay: time.Second, done: make(chan struct{})}
	if err := s.spawn(); err != nil {
		return nil, err
	}
	go s.loop()
	return s, nil
}

func (s *Supervisor) spawn() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts++
	f, err := os.Create(filepath.Join(s.logDir, fmt.Sprintf("worker-%03d.log", s.starts)))
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "-metrics-addr=")
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start worker: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		f.Close()
		s.mu.Lock()
		how := "exit 0"
		if err != nil {
			how = err.Error()
		}
		s.exits = append(s.exits, how)
		s.mu.Unlock()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	return nil
}

// loop restarts the worker whenever it ends, until Stop.
func (s *Supervisor) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		<-exited
		time.Sleep(s.RestartDelay)
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			return
		}
		for s.spawn() != nil {
			time.Sleep(time.Second)
		}
	}
}

// Kill SIGKILLs the running worker process (waiting up to a minute for
// one, while a worker that cannot start keeps exiting); the supervisor
// starts a new one.
func (s *Supervisor) Kill() error {
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.Lock()
		cmd, exited := s.cmd, s.exited
		s.mu.Unlock()
		select {
		case <-exited:
			if time.Now().After(deadline) {
				return fmt.Errorf("no worker process stayed up for a minute to be killed")
			}
			time.Sleep(100 * time.Millisecond)
			continue
		default:
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		s.mu.Lock()
		s.kills++
		s.mu.Unlock()
		return nil
	}
}

// Stats says how many processes were started and killed, and how the
// processes that ended did.
func (s *Supervisor) Stats() (starts, kills int, exits []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts, s.kills, append([]string(nil), s.exits...)
}

// Logs returns the last lines of the newest worker log, for failure
// messages.
func (s *Supervisor) Logs(n int) string {
	s.mu.Lock()
	name := filepath.Join(s.logDir, fmt.Sprintf("worker-%03d.log", s.starts))
	s.mu.Unlock()
	b, _ := os.ReadFile(name)
	return lastLines(string(b), n)
}

// Stop ends the worker gracefully (SIGTERM, then SIGKILL after 40 s) and
// stops restarting it.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	s.stopping = true
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(40 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	<-s.done
}
