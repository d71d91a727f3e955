package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/metalpower/metalpower/internal/api"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
)

// NovaFields is what Nova's ironic driver (Zed) asks for when it lists
// nodes and looks one up by instance.
const NovaFields = "uuid,power_state,target_power_state,provision_state,target_provision_state,last_error,maintenance,properties,instance_uuid,traits,resource_class"

// APIOptions shapes `starter bench api`.
type APIOptions struct {
	// Nodes enrolled (default 10,000), Clients sending at once (default
	// 20).
	Nodes, Clients int
	// Database: "sqlite" (a file of its own, the default) or "postgres"
	// (a database of its own on the local server, dropped after).
	Database string
	// Duration of each read phase (default 10 s); Puts power changes in
	// all (default 200).
	Duration time.Duration
	Puts     int
	// CPUProfile, when set, receives a CPU profile of the whole run's
	// calls (go tool pprof FILE).
	CPUProfile string
}

// API enrolls opts.Nodes nodes, serves the REST API over them on a
// loopback port, and measures with opts.Clients concurrent clients what
// Nova asks of it: the full listing (every page), the by-instance lookup,
// a single node's GET, and a power change up to its 202.
func API(ctx context.Context, cfg config.Config, opts APIOptions, w io.Writer) error {
	opts = opts.withDefaults()
	url, drop, err := benchDatabase(ctx, opts.Database)
	if err != nil {
		return err
	}
	defer drop()
	st, err := store.Open(ctx, url)
	if err != nil {
		return err
	}
	defer st.Close()
	fl, err := testbed.StartFleet(testbed.FleetOptions{Redfish: opts.Nodes})
	if err != nil {
		return err
	}
	defer fl.Close()
	cfg.Temporal.TaskQueue = "bench-api-" + uuid.NewString()[:8]
	fl.Configure(&cfg)
	cfg.Nova.SendPowerNotifications = false

	start := time.Now()
	instances := make([]string, opts.Nodes)
	uuids := make([]string, opts.Nodes)
	ids := fl.Redfish.SystemIDs()
	for i := range opts.Nodes {
		n := node.New("", fmt.Sprintf("bench-api-%05d", i), redfish.Name, fl.RedfishInfo(ids[i]))
		n.ProvisionState, n.PowerState = node.Active, node.PowerOn
		n.InstanceUUID, n.ResourceClass = uuid.NewString(), "baremetal.gold"
		n.Properties = map[string]any{"cpu_arch": "x86_64", "memory_mb": 262144, "local_gb": 960, "cpus": 64}
		n.Traits = []string{"CUSTOM_GOLD", "HW_CPU_X86_AVX2"}
		if err := st.Create(ctx, n); err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
		instances[i], uuids[i] = n.InstanceUUID, n.UUID
	}
	fmt.Fprintf(w, "metalpower API benchmark: %d nodes on %s (enrolled in %v), %d clients, Temporal at %s\n\n",
		opts.Nodes, opts.Database, time.Since(start).Round(time.Millisecond), opts.Clients, cfg.Temporal.Address)

	wk, err := testbed.StartWorker(ctx, cfg, zerolog.Nop(), conductor.WorkerOptions{Store: st, NoSchedules: true})
	if err != nil {
		return err
	}
	defer wk.Close()
	defer wk.Stop()
	srv := httptest.NewServer((&api.Server{Store: st, Temporal: wk.Client, TaskQueue: cfg.Temporal.TaskQueue, Log: zerolog.Nop()}).Handler())
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: opts.Clients}}

	fmt.Fprintf(w, "%-38s %9s %10s %10s %10s\n", "call", "requests", "req/s", "p50", "p99")
	report := func(name string, lat []time.Duration, elapsed time.Duration) {
		slices.Sort(lat)
		fmt.Fprintf(w, "%-38s %9d %10.1f %10v %10v\n", name, len(lat), float64(len(lat))/elapsed.Seconds(),
			percentile(lat, 50).Round(10*time.Microsecond), percentile(lat, 99).Round(10*time.Microsecond))
	}
	var next atomic.Int64
	phases := []struct {
		name string
		call func() error
	}{
		{"Nova's full listing (all pages)", func() error {
			pages, n := 0, 0
			for url := srv.URL + "/v1/nodes?fields=" + NovaFields; url != ""; pages++ {
				var page struct {
					Nodes []json.RawMessage `json:"nodes"`
					Next  string            `json:"next"`
				}
				if err := getJSON(hc, url, &page); err != nil {
					return err
				}
				n += len(page.Nodes)
				url = page.Next
			}
			if n != opts.Nodes {
				return fmt.Errorf("the listing returned %d nodes in %d pages, want %d", n, pages, opts.Nodes)
			}
			return nil
		}},
		// The same pages read but not decoded: what the API itself
		// takes, once the clients' own JSON decoding is left out.
		{"the full listing, bodies not decoded", func() error {
			pages := 0
			for url := srv.URL + "/v1/nodes?fields=" + NovaFields; url != ""; pages++ {
				body, err := getBody(hc, url)
				if err != nil {
					return err
				}
				url = ""
				if i := bytes.LastIndex(body, []byte(`],"next":`)); i >= 0 {
					var tail struct {
						Next string `json:"next"`
					}
					if err := json.Unmarshal(append([]byte("{"), body[i+2:]...), &tail); err != nil {
						return fmt.Errorf("page %d: %w", pages, err)
					}
					url = tail.Next
				}
			}
			if want := (opts.Nodes + 999) / 1000; pages != want && pages != want+1 {
				return fmt.Errorf("the listing took %d pages, want %d", pages, want)
			}
			return nil
		}},
		// One page, as a client that times requests rather than whole
		// listings sees it.
		{"one listing page (1,000 nodes)", func() error {
			var page struct {
				Nodes []json.RawMessage `json:"nodes"`
			}
			if err := getJSON(hc, srv.URL+"/v1/nodes?limit=1000&fields="+NovaFields, &page); err != nil {
				return err
			}
			if len(page.Nodes) != min(1000, opts.Nodes) {
				return fmt.Errorf("the page held %d nodes", len(page.Nodes))
			}
			return nil
		}},
		{"by-instance lookup", func() error {
			i := int(next.Add(1)) % opts.Nodes
			var page struct{ Nodes []json.RawMessage }
			if err := getJSON(hc, srv.URL+"/v1/nodes?instance_uuid="+instances[i]+"&fields="+NovaFields, &page); err != nil {
				return err
			}
			if len(page.Nodes) != 1 {
				return fmt.Errorf("lookup of instance %s found %d nodes", instances[i], len(page.Nodes))
			}
			return nil
		}},
		{"single node GET", func() error {
			i := int(next.Add(1)) % opts.Nodes
			return getJSON(hc, srv.URL+"/v1/nodes/"+uuids[i], &struct{}{})
		}},
	}
	// The API keeps the views it rendered, so the first listing after it
	// starts renders every node and the ones after it only what changed:
	// the first is reported on its own, the steady state below.
	t0 := time.Now()
	if err := phases[0].call(); err != nil {
		return fmt.Errorf("first listing: %w", err)
	}
	report("first listing after start (1 client)", []time.Duration{time.Since(t0)}, time.Since(t0))
	stop, err := cpuProfile(opts.CPUProfile)
	if err != nil {
		return err
	}
	defer stop()
	for _, p := range phases {
		lat, elapsed, err := hammer(opts.Clients, opts.Duration, 0, p.call)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		report(p.name, lat, elapsed)
	}
	// Each power change on a node of its own (a second would meet the
	// first one's lock): power off, up to the 202.
	next.Store(0)
	lat, elapsed, err := hammer(opts.Clients, 0, min(opts.Puts, opts.Nodes), func() error {
		i := int(next.Add(1)-1) % opts.Nodes
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/nodes/"+uuids[i]+"/states/power", strings.NewReader(`{"target":"power off"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-OpenStack-Ironic-API-Version", "1.76")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("PUT power: %d %s", resp.StatusCode, b)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("power PUT: %w", err)
	}
	report("power PUT to 202", lat, elapsed)
	return nil
}

func (o APIOptions) withDefaults() APIOptions {
	if o.Nodes <= 0 {
		o.Nodes = 10000
	}
	if o.Clients <= 0 {
		o.Clients = 20
	}
	if o.Database == "" {
		o.Database = "sqlite"
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Puts <= 0 {
		o.Puts = 200
	}
	return o
}

// hammer runs call from clients goroutines, for d or until total calls
// were made, and returns each call's latency.
func hammer(clients int, d time.Duration, total int, call func() error) ([]time.Duration, time.Duration, error) {
	var (
		mu    sync.Mutex
		lat   []time.Duration
		first error
		made  atomic.Int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if (d > 0 && time.Since(start) >= d) || (total > 0 && made.Add(1) > int64(total)) {
					return
				}
				t0 := time.Now()
				err := call()
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				lat = append(lat, time.Since(t0))
				stop := first != nil
				mu.Unlock()
				if stop {
					return
				}
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(start), first
}

func getJSON(hc *http.Client, url string, v any) error {
	body, err := getBody(hc, url)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

func getBody(hc *http.Client, url string) ([]byte, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.76")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return body, nil
}

// benchDatabase makes a node store of the benchmark's own: a SQLite file
// in a temporary directory, or a database on the local PostgreSQL.
func benchDatabase(ctx context.Context, kind string) (url string, drop func(), err error) {
	switch kind {
	case "sqlite":
		dir, err := os.MkdirTemp("", "metalpower-bench-api-")
		if err != nil {
			return "", nil, err
		}
		return "sqlite://" + filepath.Join(dir, "nodes.db"), func() { os.RemoveAll(dir) }, nil
	case "postgres":
		name := fmt.Sprintf("mp_bench_api_%d", os.Getpid())
		url, err := cluster.EnsureDatabase(ctx, name)
		if err != nil {
			return "", nil, err
		}
		return url, func() { cluster.DropDatabase(context.Background(), name) }, nil
	}
	return "", nil, fmt.Errorf("database %q: use sqlite or postgres", kind)
}
