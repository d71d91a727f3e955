package api_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/api"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	ks "github.com/metalpower/metalpower/internal/testbed/keystone"
)

// BenchmarkPowerPut measures the API's power change up to its 202, at 20
// clients, without authentication and with Keystone tokens (a warm
// cache: each client's token validated once before the timer starts),
// over the same stack in the same run: each iteration is 100 changes of
// each kind. It reports both rates, their ratio and the Keystone
// requests each token cost. `make bench-keystone` runs it.
func BenchmarkPowerPut(b *testing.B) {
	const clients, nodes = 20, 200
	k := ks.Start(b)
	s := itest.NewStack(b, srv, itest.StackOptions{RedfishSystems: 8, IPMIBMCs: 1})
	for i := range nodes {
		s.AddNode(b, node.New("", "bench-"+strconv.Itoa(i), redfish.Name, s.RedfishInfo(strconv.Itoa(i%8+1))), "")
	}
	v := newValidator(b, k, 300)
	noauth := s.StartAPIServer(b, &api.Server{})
	withKeystone := s.StartAPIServer(b, &api.Server{Auth: v, Policy: policy.Config{ServiceProjectName: "service"}})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := ks.User{Name: "admin", Password: k.AdminPassword}
	tokens := make([]string, clients)
	for i := range tokens {
		tok, err := k.Token(ctx, admin, "")
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = tok
	}

	var next atomic.Int64
	put := func(base, tok string) int {
		i := next.Add(1)
		target := node.PowerOff
		if (i/nodes)%2 == 1 {
			target = node.PowerOn
		}
		req, _ := http.NewRequest(http.MethodPut, base+"/v1/nodes/bench-"+strconv.Itoa(int(i%nodes))+"/states/power",
			strings.NewReader(`{"target": "`+target+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-OpenStack-Ironic-API-Version", "1.95")
		if tok != "" {
			req.Header.Set("X-Auth-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// phase sends perPhase changes from 20 clients, each with its token,
	// and returns how long they took. A node still busy with its previous
	// change answers 409 (NodeLocked): only started changes count.
	const perPhase = 100
	phase := func(base string, tokens []string) time.Duration {
		var sent atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sent.Add(1) <= perPhase {
					for put(base, tokens[c]) != http.StatusAccepted {
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	none := make([]string, clients)
	// Warm: every client's token validated once.
	for _, tok := range tokens {
		put(withKeystone, tok)
	}
	before := v.Requests()
	b.ResetTimer()
	// The two kinds alternate, so a Temporal that slows as its history
	// grows weighs on both alike.
	// Each phase starts with no change in flight, so none pays for the
	// workflows the one before it started.
	settle := func() {
		b.StopTimer()
		defer b.StartTimer()
		for {
			busy, err := s.Store.List(context.Background(), store.Query{Filter: store.Filter{TargetPowerStateSet: store.Bool(true)}, Limit: 1})
			if err != nil {
				b.Fatal(err)
			}
			if len(busy) == 0 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var tNone, tKeystone time.Duration
	for i := range b.N {
		// Alternate which goes first, too.
		if i%2 == 0 {
			settle()
			tNone += phase(noauth, none)
		}
		settle()
		tKeystone += phase(withKeystone, tokens)
		if i%2 == 1 {
			settle()
			tNone += phase(noauth, none)
		}
	}
	b.StopTimer()
	rate := func(d time.Duration) float64 { return float64(b.N*perPhase) / d.Seconds() }
	b.ReportMetric(rate(tNone), "noauth-puts/s")
	b.ReportMetric(rate(tKeystone), "keystone-puts/s")
	b.ReportMetric(rate(tKeystone)/rate(tNone), "keystone/noauth")
	b.ReportMetric(float64(v.Requests()-before)/float64(clients), "keystone-requests/token")
}
