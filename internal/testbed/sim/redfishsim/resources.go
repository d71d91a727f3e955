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
	boot := object{
		"BootSourceOverrideEnabled":                        sys.bootEnabled,
		"BootSourceOverrideTarget":                         sys.bootTarget,
		"BootSourceOverrideMode":                           sys.bootMode,
		"BootSourceOverrideTarget@Redfish.AllowableValues": bootTargets,
	}
	resetTypes := append([]string{}, sys.allowedResetTypes()...)
	s.mu.Unlock()

	n, _ := strconv.Atoi(id)
	path := s.SystemPath(id)
	cs := resource(path, "ComputerSystem", "v1_10_0", id, "Simulated System "+id)
	cs["SystemType"] = "Physical"
	cs["UUID"] = stableUUID("system", n)
	cs["Manufacturer"] = "Metalpower"
	cs["Model"] = "SimServer 1000"
	cs["SerialNumber"] = fmt.Sprintf("SIM%08d", n)
	cs["AssetTag"] = ""
	cs["BiosVersion"] = "1.0.0"
	cs["PowerState"] = power
	cs["Status"] = statusOK()
	cs["Boot"] = boot
	cs["ProcessorSummary"] = object{"Count": 2, "Model": "Simulated CPU", "Status": statusOK()}
	cs["MemorySummary"] = object{"TotalSystemMemoryGiB": 256, "Status": statusOK()}
	cs["Links"] = object{
		"Chassis":   []object{link(chassisPath + "/" + id)},
		"ManagedBy": []object{link(managersPath + "/" + id)},
	}
	cs["Actions"] = object{"#ComputerSystem.Reset": object{
		"target":                            path + "/Actions/ComputerSystem.Reset",
		"ResetType@Redfish.AllowableValues": resetTypes,
	}}
	writeJSON(w, http.StatusOK, cs)
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
