package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// TestWhatNovasDriverReadsCanBeSet: resource_class, properties and traits,
// which Nova's ironic driver reads for its resource tracker, are set on
// create, by PATCH (properties at any depth) and through the traits API,
// validated as Ironic does, and filter the node list.
func TestWhatNovasDriverReadsCanBeSet(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1})
	base := s.StartAPI(t, nil) + "/v1/nodes"
	const v = "1.76"
	get := func(t *testing.T, url string) map[string]any {
		t.Helper()
		code, _, body := do(t, http.MethodGet, url, v, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, code, body)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	code, _, body := do(t, http.MethodPost, base, v, `{"name": "gold-1", "driver": "redfish",
		"driver_info": {"redfish_address": "https://10.0.0.9", "redfish_system_id": "/redfish/v1/Systems/1"},
		"resource_class": "baremetal.gold", "properties": {"cpu_arch": "x86_64", "memory_mb": 65536, "capabilities": {"boot_mode": "bios"}}}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	steps := []struct {
		name, method, path, body string
		want                     int
	}{
		{"patch a property", http.MethodPatch, "/gold-1", `[{"op": "replace", "path": "/properties/cpu_arch", "value": "aarch64"}]`, 200},
		{"patch a nested property", http.MethodPatch, "/gold-1", `[{"op": "add", "path": "/properties/capabilities/boot_mode", "value": "uefi"}]`, 200},
		{"add a property", http.MethodPatch, "/gold-1", `[{"op": "add", "path": "/properties/local_gb", "value": 900}]`, 200},
		{"remove a missing property", http.MethodPatch, "/gold-1", `[{"op": "remove", "path": "/properties/nope"}]`, 400},
		{"a path through a missing object", http.MethodPatch, "/gold-1", `[{"op": "add", "path": "/properties/a/b", "value": 1}]`, 400},
		{"resource class too long", http.MethodPatch, "/gold-1", `[{"op": "replace", "path": "/resource_class", "value": "` + strings.Repeat("x", 81) + `"}]`, 400},
		{"traits are not patched", http.MethodPatch, "/gold-1", `[{"op": "add", "path": "/traits", "value": ["CUSTOM_X"]}]`, 400},
		{"set traits", http.MethodPut, "/gold-1/traits", `{"traits": ["CUSTOM_GPU", "HW_CPU_X86_AVX2", "CUSTOM_GPU"]}`, 204},
		{"add a trait", http.MethodPut, "/gold-1/traits/CUSTOM_RAID", ``, 204},
		{"an invalid trait", http.MethodPut, "/gold-1/traits/custom-lower", ``, 400},
		{"remove a trait", http.MethodDelete, "/gold-1/traits/HW_CPU_X86_AVX2", ``, 204},
		{"remove a trait it lacks", http.MethodDelete, "/gold-1/traits/CUSTOM_NONE", ``, 404},
		{"traits on create", http.MethodPost, "", `{"driver": "ipmi", "driver_info": {"ipmi_address": "10.0.0.8"}, "traits": ["CUSTOM_X"]}`, 400},
	}
	for _, st := range steps {
		if code, _, body := do(t, st.method, base+st.path, v, st.body); code != st.want {
			t.Fatalf("%s: %d %s, want %d", st.name, code, body, st.want)
		}
	}
	n := get(t, base+"/gold-1")
	props, _ := json.Marshal(n["properties"])
	if n["resource_class"] != "baremetal.gold" ||
		string(props) != `{"capabilities":{"boot_mode":"uefi"},"cpu_arch":"aarch64","local_gb":900,"memory_mb":65536}` {
		t.Fatalf("node: resource_class %v, properties %s", n["resource_class"], props)
	}
	if traits := get(t, base+"/gold-1/traits")["traits"]; len(traits.([]any)) != 2 || traits.([]any)[0] != "CUSTOM_GPU" || traits.([]any)[1] != "CUSTOM_RAID" {
		t.Fatalf("traits = %v", traits)
	}
	// Below 1.37 the traits API does not exist; below 1.21 resource_class
	// cannot be set.
	if code, _, _ := do(t, http.MethodGet, base+"/gold-1/traits", "1.36", ""); code != http.StatusNotFound {
		t.Fatalf("traits at 1.36: %d", code)
	}
	if code, _, _ := do(t, http.MethodPatch, base+"/gold-1", "1.20", `[{"op": "replace", "path": "/resource_class", "value": "x"}]`); code != http.StatusBadRequest {
		t.Fatalf("resource_class at 1.20: %d", code)
	}

	// Nova's listing filters.
	inst := "6f1f7a2e-8c1e-4a49-9b5e-0c7d0e1f2a3b"
	other := s.AddRedfishNode(t, "silver-1", "1", inst)
	s.Modify(t, other.UUID, func(n *node.Node) { n.ResourceClass = "baremetal.silver" })
	for _, tt := range []struct{ query, want string }{
		{"resource_class=baremetal.gold", "gold-1"},
		{"resource_class=baremetal.silver", "silver-1"},
		{"associated=true", "silver-1"},
		{"associated=false&resource_class=baremetal.gold", "gold-1"},
		{"provision_state=enroll", "gold-1"},
		{"maintenance=false&provision_state=active", "silver-1"},
		{"instance_uuid=" + inst, "silver-1"},
	} {
		for _, path := range []string{"?fields=name,resource_class&", "/detail?"} {
			list := get(t, base+path+tt.query)["nodes"].([]any)
			if len(list) != 1 || list[0].(map[string]any)["name"] != tt.want {
				t.Fatalf("%s%s: %v, want %s", path, tt.query, list, tt.want)
			}
		}
	}
	// Provisioning beyond the power subset: a clear 400 naming what is served.
	code, _, body = do(t, http.MethodPut, base+"/gold-1/states/provision", v, `{"target": "deleted"}`)
	if code != http.StatusBadRequest || !strings.Contains(ironicFault(t, body), "manage provide adopt") {
		t.Fatalf("provision deleted: %d %s", code, body)
	}
}

// TestConductorGroups: conductor_group as Ironic stores it (1.46,
// case-insensitive, letters, digits and _ - .) and filters by it, as
// Nova's [ironic] partition_key listing asks.
func TestConductorGroups(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1})
	base := s.StartAPI(t, nil) + "/v1/nodes"
	create := func(name, group string) (int, string) {
		code, _, body := do(t, http.MethodPost, base, "1.46", `{"name": "`+name+`", "driver": "ipmi", "driver_info": {"ipmi_address": "10.0.0.9"}, "conductor_group": "`+group+`"}`)
		return code, body
	}
	if code, body := create("seg-a", "Rack-A.1"); code != http.StatusCreated || !strings.Contains(body, `"conductor_group":"rack-a.1"`) {
		t.Fatalf("create in a group: %d %s", code, body)
	}
	if code, body := create("plain", ""); code != http.StatusCreated {
		t.Fatalf("create in the default group: %d %s", code, body)
	}
	if code, body := create("bad", "rack a"); code != http.StatusBadRequest {
		t.Fatalf("an invalid group: %d %s", code, body)
	}
	if code, _, body := do(t, http.MethodPost, base, "1.45", `{"driver": "ipmi", "driver_info": {"ipmi_address": "10.0.0.9"}, "conductor_group": "x"}`); code != http.StatusNotAcceptable {
		t.Fatalf("a group below 1.46: %d %s", code, body)
	}
	if code, _, body := do(t, http.MethodPatch, base+"/plain", "1.46", `[{"op": "add", "path": "/conductor_group", "value": "RACK-B"}]`); code != http.StatusOK || !strings.Contains(body, `"conductor_group":"rack-b"`) {
		t.Fatalf("patch the group: %d %s", code, body)
	}
	for _, tt := range []struct{ query, want string }{
		{"conductor_group=RACK-A.1", "seg-a"}, {"conductor_group=rack-b", "plain"},
	} {
		code, _, body := do(t, http.MethodGet, base+"?fields=name&"+tt.query, "1.46", "")
		var out struct{ Nodes []struct{ Name string } }
		if err := json.Unmarshal([]byte(body), &out); code != http.StatusOK || err != nil || len(out.Nodes) != 1 || out.Nodes[0].Name != tt.want {
			t.Fatalf("%s: %d %s", tt.query, code, body)
		}
	}
	if code, _, body := do(t, http.MethodPatch, base+"/plain", "1.46", `[{"op": "remove", "path": "/conductor_group"}]`); code != http.StatusOK || !strings.Contains(body, `"conductor_group":""`) {
		t.Fatalf("back to the default group: %d %s", code, body)
	}
}
