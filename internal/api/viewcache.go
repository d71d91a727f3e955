package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/store"
)

// viewCacheBytes bounds the encoded views kept: Nova's field set for
// 100,000 nodes is about 45 MiB.
const viewCacheBytes = 128 << 20

// viewCache keeps each node's encoded view by rendering (API version,
// fields, base URL) for as long as the node keeps its version. Every
// write to a node raises its version, in any process, so a view is reused
// only while it is still what the node would render. Nova's resource
// tracker lists every node every period on every compute service, and
// between two listings few nodes change.
type viewCache struct {
	mu      sync.Mutex
	renders map[string]map[string]cachedView
	bytes   int
}

type cachedView struct {
	version int64
	json    []byte
}

// renderKey names what a view depends on besides the node.
func renderKey(r *http.Request, fields []string) string {
	return versionOf(r).String() + " " + baseURL(r) + " " + strings.Join(fields, ",")
}

// encodedViews returns the views of the listed nodes, in order, reading
// from the store only the nodes written since their view was kept. A
// node deleted meanwhile has a nil view.
func (c *viewCache) encodedViews(ctx context.Context, st store.Store, r *http.Request, fields []string, refs []store.Versioned) ([][]byte, error) {
	key := renderKey(r, fields)
	out := make([][]byte, len(refs))
	var missing []string
	c.mu.Lock()
	kept := c.renders[key]
	for i, ref := range refs {
		if v, ok := kept[ref.UUID]; ok && v.version == ref.Version {
			out[i] = v.json
		} else {
			missing = append(missing, ref.UUID)
		}
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	nodes, err := st.GetMany(ctx, missing)
	if err != nil {
		return nil, err
	}
	fresh, err := c.render(key, r, fields, nodes)
	if err != nil {
		return nil, err
	}
	byUUID := make(map[string][]byte, len(nodes))
	for i, n := range nodes {
		byUUID[n.UUID] = fresh[i].json
	}
	for i, ref := range refs {
		if out[i] == nil {
			// A node deleted between the two reads is left out, as a
			// listing a moment later would.
			out[i] = byUUID[ref.UUID]
		}
	}
	return out, nil
}

// encodedView is encodedViews for one node already read.
func (c *viewCache) encodedView(r *http.Request, n *node.Node, fields []string) ([]byte, error) {
	key := renderKey(r, fields)
	c.mu.Lock()
	v, ok := c.renders[key][n.UUID]
	c.mu.Unlock()
	if ok && v.version == n.Version {
		return v.json, nil
	}
	fresh, err := c.render(key, r, fields, []*node.Node{n})
	if err != nil {
		return nil, err
	}
	return fresh[0].json, nil
}

// render encodes the nodes' views and keeps them.
func (c *viewCache) render(key string, r *http.Request, fields []string, nodes []*node.Node) ([]cachedView, error) {
	views := make([]cachedView, len(nodes))
	for i, n := range nodes {
		b, err := json.Marshal(view(r, n, fields))
		if err != nil {
			return nil, err
		}
		views[i] = cachedView{version: n.Version, json: b}
	}
	c.keep(key, nodes, views)
	return views, nil
}

func (c *viewCache) keep(key string, nodes []*node.Node, views []cachedView) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.renders == nil || c.bytes > viewCacheBytes {
		// Starting over is simpler than tracking use, and a full cache
		// means renderings nobody repeats (odd field sets, host names).
		c.renders, c.bytes = map[string]map[string]cachedView{}, 0
	}
	kept := c.renders[key]
	if kept == nil {
		kept = map[string]cachedView{}
		c.renders[key] = kept
	}
	for i, n := range nodes {
		if old, ok := kept[n.UUID]; ok {
			if old.version > views[i].version {
				continue
			}
			c.bytes -= len(old.json)
		}
		kept[n.UUID] = views[i]
		c.bytes += len(views[i].json)
	}
}

// redact replaces the fields of an encoded view that the caller may not
// read. Views are kept unredacted: only callers the policy filters pay.
func redact(view []byte, rs []policy.Redaction) ([]byte, error) {
	if len(rs) == 0 || view == nil {
		return view, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(view, &fields); err != nil {
		return nil, err
	}
	for _, r := range rs {
		if _, ok := fields[r.Field]; ok {
			v, err := json.Marshal(r.Value)
			if err != nil {
				return nil, err
			}
			fields[r.Field] = v
		}
	}
	return json.Marshal(fields)
}

func compact(views [][]byte) [][]byte {
	out := views[:0]
	for _, v := range views {
		if v != nil {
			out = append(out, v)
		}
	}
	return out
}

// pageCacheBytes bounds the listing pages kept: Nova's listing of
// 100,000 nodes is about 45 MiB.
const pageCacheBytes = 64 << 20

// pageCache keeps whole listing pages, as written, for as long as no node
// is written anywhere (the store's generation, raised in the writing
// transaction by every write, by any process). Nova's compute services
// list the same pages every period; between two writes they get the bytes
// the previous listing rendered, without a query per node.
type pageCache struct {
	mu    sync.Mutex
	gen   int64
	pages map[string][]byte
	bytes int
}

// pageKey names a listing: the request's query (its parameters sorted)
// under the rendering it depends on.
func pageKey(r *http.Request, fields []string) string {
	return renderKey(r, fields) + " " + r.URL.Path + "?" + r.URL.Query().Encode()
}

func (c *pageCache) get(gen int64, key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.pages[key]
	return b, ok && c.gen == gen
}

// keep keeps a page rendered after the generation gen was read: if a write
// came in between, the generation read next is a newer one, and the page
// is not served again.
func (c *pageCache) keep(gen int64, key string, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case gen < c.gen:
		return
	case gen > c.gen || c.pages == nil || c.bytes > pageCacheBytes:
		c.gen, c.pages, c.bytes = gen, map[string][]byte{}, 0
	}
	c.bytes += len(body) - len(c.pages[key])
	c.pages[key] = body
}
