package redfishsim

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// bootTargets are the boot override targets every system offers.
var bootTargets = []string{"None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "Diags", "UefiShell", "UefiHttp"}

// stableUUID derives a UUID from a resource's kind and number, so a system
// keeps its UUID across Sims and test runs, as hardware does.
func stableUUID(kind string, n int) string {
	h := sha256.Sum256([]byte("redfishsim/" + kind + "/" + strconv.Itoa(n)))
	h[6] = h[6]&0x0f | 0x50 // version 5 layout
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func statusOK() object {
	return object{"State": "Enabled", "Health": "OK", "HealthRollup": "OK"}
}

// resource returns the properties every Redfish resource starts with.
// schema is e.g. "ComputerSystem" and version e.g. "v1_10_0".
func resource(path, schema, version, id, name string) object {
	return object{
		"@odata.context": "/redfish/v1/$metadata#" + schema + "." + schema,
		"@odata.id":      path,
		"@odata.type":    "#" + schema + "." + version + "." + schema,
		"Id":             id,
		"Name":           name,
	}
}

func (s *Sim) serveRoot(w http.ResponseWriter) {
	root := resource(rootPath, "ServiceRoot", "v1_5_0", "RootService", "Root Service")
	root["RedfishVersion"] = "1.6.0"
	root["UUID"] = stableUUID("root", 0)
	root["Vendor"] = "Metalpower"
	root["Product"] = "Redfish fleet simulator"
	root["Systems"] = link(systemsPath)
	root["Chassis"] = link(chassisPath)
	root["Managers"] = link(managersPath)
	root["SessionService"] = link(sessSvcPath)
	root["Links"] = object{"Sessions": link(sessionsPath)}
	writeJSON(w, http.StatusOK, root)
}

// serveCollection lists one member per system under base: every simulated
// BMC has one system, one chassis and one manager, all with the same ID.
// schema is e.g. "ComputerSystemCollection".
func (s *Sim) serveCollection(w http.ResponseWriter, base, schema, name string) {
	members := make([]object, len(s.systems))
	for i := range members {
		members[i] = link(base + "/" + strconv.Itoa(i+1))
	}
	coll := object{
		"@odata.context":      "/redfish/v1/$metadata#" + schema + "." + schema,
		"@odata.id":           base,
		"@odata.type":         "#" + schema + "." + schema,
		"Name":                name,
		"Members":             members,
		"Members@odata.count": len(members),
	}
	writeJSON(w, http.StatusOK, coll)
}

func (s *Sim) serveSystem(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	sys := s.lookup(id)
	if sys == nil {
		s.mu.Unlock()
		notFound(w, r)
		return
	}
	sys.resolve(time.Now())
	power := sys.power
	if sys.fault == FaultFlap {
		if sys.flapReads%2 == 1 {
			power = opposite(power)
		}
		sys.flapReads++
	}
	boot := systemBoot{BootSourceOverrideEnabled: sys.bootEnabled, BootSourceOverrideTarget: sys.bootTarget,
		BootSourceOverrideMode: sys.bootMode, AllowableTargets: bootTargets}
	resetTypes := append([]string{}, sys.allowedResetTypes()...)
	s.mu.Unlock()

	n, _ := strconv.Atoi(id)
	path := s.SystemPath(id)
	writeJSON(w, http.StatusOK, computerSystem{
		Context: "/redfish/v1/$metadata#ComputerSystem.ComputerSystem", ODataID: path,
		Type: "#ComputerSystem.v1_10_0.ComputerSystem", ID: id, Name: "Simulated System " + id,
		SystemType: "Physical", UUID: stableUUID("system", n), Manufacturer: "Metalpower", Model: "SimServer 1000",
		SerialNumber: fmt.Sprintf("SIM%08d", n), BiosVersion: "1.0.0", PowerState: power, Status: okStatus, Boot: boot,
		ProcessorSummary: processorSummary{Count: 2, Model: "Simulated CPU", Status: okStatus},
		MemorySummary:    memorySummary{TotalSystemMemoryGiB: 256, Status: okStatus},
		Links:            systemLinks{Chassis: []odataLink{{chassisPath + "/" + id}}, ManagedBy: []odataLink{{managersPath + "/" + id}}},
		Actions:          systemActions{Reset: resetAction{Target: path + "/Actions/ComputerSystem.Reset", AllowableValues: resetTypes}},
	})
}

// computerSystem is the ComputerSystem resource. A struct rather than a
// map: every sync pass reads every system, and the simulator shares the
// machine's cores with the worker it serves.
type computerSystem struct {
	Context          string           `json:"@odata.context"`
	ODataID          string           `json:"@odata.id"`
	Type             string           `json:"@odata.type"`
	ID               string           `json:"Id"`
	Name             string           `json:"Name"`
	SystemType       string           `json:"SystemType"`
	UUID             string           `json:"UUID"`
	Manufacturer     string           `json:"Manufacturer"`
	Model            string           `json:"Model"`
	SerialNumber     string           `json:"SerialNumber"`
	AssetTag         string           `json:"AssetTag"`
	BiosVersion      string           `json:"BiosVersion"`
	PowerState       string           `json:"PowerState"`
	Status           status           `json:"Status"`
	Boot             systemBoot       `json:"Boot"`
	ProcessorSummary processorSummary `json:"ProcessorSummary"`
	MemorySummary    memorySummary    `json:"MemorySummary"`
	Links            systemLinks      `json:"Links"`
	Actions          systemActions    `json:"Actions"`
}

type status struct{ State, Health, HealthRollup string }

var okStatus = status{State: "Enabled", Health: "OK", HealthRollup: "OK"}

type systemBoot struct {
	BootSourceOverrideEnabled string   `json:"BootSourceOverrideEnabled"`
	BootSourceOverrideTarget  string   `json:"BootSourceOverrideTarget"`
	BootSourceOverrideMode    string   `json:"BootSourceOverrideMode"`
	AllowableTargets          []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
}

type processorSummary struct {
	Count  int
	Model  string
	Status status
}

type memorySummary struct {
	TotalSystemMemoryGiB int
	Status               status
}

type odataLink struct {
	ID string `json:"@odata.id"`
}

type systemLinks struct{ Chassis, ManagedBy []odataLink }

type systemActions struct {
	Reset resetAction `json:"#ComputerSystem.Reset"`
}

type resetAction struct {
	Target          string   `json:"target"`
	AllowableValues []string `json:"ResetType@Redfish.AllowableValues"`
}

func (s *Sim) serveChassis(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	sys := s.lookup(id)
	if sys == nil {
		s.mu.Unlock()
		notFound(w, r)
		return
	}
	sys.resolve(time.Now())
	power := sys.power
	s.mu.Unlock()

	n, _ := strconv.Atoi(id)
	ch := resource(chassisPath+"/"+id, "Chassis", "v1_10_0", id, "Chassis "+id)
	ch["ChassisType"] = "RackMount"
	ch["Manufacturer"] = "Metalpower"
	ch["Model"] = "SimServer 1000"
	ch["SerialNumber"] = fmt.Sprintf("SIMC%07d", n)
	ch["PowerState"] = power
	ch["Status"] = statusOK()
	ch["Links"] = object{
		"ComputerSystems": []object{link(s.SystemPath(id))},
		"ManagedBy":       []object{link(managersPath + "/" + id)},
	}
	writeJSON(w, http.StatusOK, ch)
}

func (s *Sim) serveManager(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	found := s.lookup(id) != nil
	s.mu.Unlock()
	if !found {
		notFound(w, r)
		return
	}
	n, _ := strconv.Atoi(id)
	m := resource(managersPath+"/"+id, "Manager", "v1_5_0", id, "Manager "+id)
	m["ManagerType"] = "BMC"
	m["UUID"] = stableUUID("manager", n)
	m["Model"] = "SimBMC"
	m["FirmwareVersion"] = "1.0.0"
	m["PowerState"] = powerOn
	m["Status"] = statusOK()
	m["Links"] = object{
		"ManagerForServers": []object{link(s.SystemPath(id))},
		"ManagerForChassis": []object{link(chassisPath + "/" + id)},
	}
	writeJSON(w, http.StatusOK, m)
}
