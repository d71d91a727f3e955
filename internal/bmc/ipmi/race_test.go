package ipmi

import (
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
)

// TestCloseNeverRacesTheKeepalive reproduces the crash of issue 11. go-ipmi
// sends a keepalive on every session 30 s after it opened, from a goroutine
// of its own with a context that is never cancelled, and its Close waits
// for Close Session's answer. When the BMC has dropped the session (gone
// silent), both wait out their attempts on the one socket, and a Close can
// clear the connection while a keepalive attempt is queued behind it: that
// attempt writes to nil, a panic in a library goroutine, which kills the
// process (on the code before issue 11, this test dies with exactly the
// issue's trace, ExchangeUntilMatch.func1 -> io.Copy). A hundred BMCs go
// silent after a first read and their clients are closed at staggered
// moments across the keepalive's attempts (30 to 36 s). The process must
// survive, and no keepalive may reach a BMC.
func TestCloseNeverRacesTheKeepalive(t *testing.T) {
	t.Parallel()
	const n = 100
	f := startFleet(t, ipmisim.Options{BMCs: n})
	ctx := testCtx(t, 10*time.Second)
	clients := make([]*Client, n)
	for i, b := range f.BMCs() {
		clients[i] = New(Info{Address: b.Host, Port: b.Port, Username: "admin", Password: "password", CipherSuite: -1}, Options{})
		if _, err := clients[i].PowerState(ctx); err != nil {
			t.Fatal(err)
		}
	}
	opened := time.Now()
	seen := make([]int64, n)
	for i, b := range f.BMCs() {
		b.SetSilent(true)
		seen[i] = b.Received()
	}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(opened.Add(30*time.Second + time.Duration(i)*60*time.Millisecond)))
			clients[i].Close()
		}()
	}
	wg.Wait()
	// Every keepalive attempt would be over by now.
	time.Sleep(time.Until(opened.Add(44 * time.Second)))
	for i, b := range f.BMCs() {
		if got := b.Received() - seen[i]; got > 1 {
			// At most the Close Session of a retired session, never the
			// keepalive (Get Session Info).
			t.Errorf("BMC %d received %d datagrams while silent; want at most the Close Session", i, got)
		}
		b.SetSilent(false)
	}
	c := New(Info{Address: f.BMCs()[0].Host, Port: f.BMCs()[0].Port, Username: "admin", Password: "password", CipherSuite: -1}, Options{})
	defer c.Close()
	if _, err := c.PowerState(testCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}
