package vsphere

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/driftd/driftd/internal/infra"
	"github.com/driftd/driftd/internal/testenv"
)

// target is how a VSphereCluster points driftd at the simulator: its host, the thumbprint of its
// certificate and the simulator's credentials.
func target(tb testing.TB, sim *testenv.VCSim, name string, folders ...string) infra.Cluster {
	tb.Helper()
	pw, _ := sim.URL.User.Password()
	return infra.Cluster{Name: name, Namespace: "fleet", Server: sim.URL.Host, Thumbprint: sim.Thumbprint(),
		VSphere: &infra.VSphereIdentity{Key: "Secret/fleet/" + name, Username: sim.URL.User.Username(), Password: pw}, Folders: folders}
}

func TestSnapshotReadsEveryVMInOneRetrieve(t *testing.T) {
	ctx := context.Background()
	sim := testenv.RequireVCSim(t, func(m *simulator.Model) { m.Machine = 3 })
	c, err := sim.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vms, err := sim.VMs(ctx)
	if err != nil || len(vms) < 3 {
		t.Fatalf("simulator VMs: %v (%d)", err, len(vms))
	}
	// Resize one, power one off.
	task, err := object.NewVirtualMachine(c.Client, vms[0].Reference()).Reconfigure(ctx, types.VirtualMachineConfigSpec{NumCPUs: 6, MemoryMB: 12288})
	if err != nil || task.Wait(ctx) != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	task, err = object.NewVirtualMachine(c.Client, vms[1].Reference()).PowerOff(ctx)
	if err != nil || task.Wait(ctx) != nil {
		t.Fatalf("power off: %v", err)
	}

	var calls []string
	p := New(Options{OnCall: func(op string) { calls = append(calls, op) }})
	snap, err := p.Snapshot(ctx, []infra.Cluster{target(t, sim, "edge", "/DC0/vm")})
	if err != nil || !snap.Complete {
		t.Fatalf("snapshot: %v %v", err, snap.Errors)
	}
	if len(snap.Instances) != len(vms) {
		t.Fatalf("%d instances, the simulator has %d VMs", len(snap.Instances), len(vms))
	}
	if snap.Calls["RetrievePropertiesEx"] != 1 || snap.Calls["CreateContainerView"] != 1 {
		t.Errorf("calls = %v, want one container view and one retrieve", snap.Calls)
	}
	byID := map[string]infra.Instance{}
	for _, i := range snap.Instances {
		byID[i.ID] = i
	}
	resized := byID[strings.ToLower(vms[0].Config.Uuid)]
	if resized.CPUs != 6 || resized.MemoryMiB != 12288 || resized.Cluster != "fleet/edge" || resized.Folder != "/DC0/vm" ||
		resized.ProviderID != "vsphere://"+strings.ToLower(vms[0].Config.Uuid) {
		t.Errorf("resized VM = %+v", resized)
	}
	if off := byID[strings.ToLower(vms[1].Config.Uuid)]; off.State != infra.StateStopped {
		t.Errorf("powered-off VM state = %q, want %q", off.State, infra.StateStopped)
	}
}

func TestSnapshotRefusesAnUnknownCertificate(t *testing.T) {
	sim := testenv.RequireVCSim(t, nil)
	c := target(t, sim, "edge")
	c.Thumbprint = strings.Repeat("AB:", 19) + "AB"
	if _, err := New(Options{}).Snapshot(context.Background(), []infra.Cluster{c}); err == nil {
		t.Fatal("a vCenter whose certificate does not match the thumbprint was trusted")
	}
}

func TestClusterOfFolder(t *testing.T) {
	clusters := []infra.Cluster{{Namespace: "fleet", Name: "a", Folders: []string{"/DC0/vm/a"}}, {Namespace: "fleet", Name: "b", Folders: []string{"b-vms"}}}
	for folder, want := range map[string]string{
		"/DC0/vm/a": "fleet/a", "/DC0/vm/a/sub": "fleet/a", "/DC0/vm/ab": "", "/DC0/vm/b-vms": "fleet/b", "/DC1/vm/x/b-vms/y": "fleet/b", "/DC0/vm": "",
	} {
		if got := clusterOfFolder(folder, clusters); got != want {
			t.Errorf("clusterOfFolder(%q) = %q, want %q", folder, got, want)
		}
	}
}

// BenchmarkSnapshot reads 1,000 VMs from the simulator: one container view and one retrieve.
func BenchmarkSnapshot(b *testing.B) {
	sim := testenv.RequireVCSim(b, func(m *simulator.Model) { m.Host, m.Machine = 0, 1000 })
	p := New(Options{})
	clusters := []infra.Cluster{target(b, sim, "edge", "/DC0/vm")}
	b.ReportAllocs()
	b.ResetTimer()
	var snap *infra.Snapshot
	for range b.N {
		var err error
		if snap, err = p.Snapshot(context.Background(), clusters); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(snap.Instances) != 1000 {
		b.Fatalf("%d VMs read, want 1000", len(snap.Instances))
	}
	b.ReportMetric(float64(snap.Calls["RetrievePropertiesEx"]), "retrieves/op")
	b.ReportMetric(float64(snap.Calls["ContinueRetrievePropertiesEx"]), "continues/op")
}

// restrictedFolder moves the first n VMs into a new folder /DC0/vm/<name> and returns their UUIDs.
func restrictedFolder(tb testing.TB, sim *testenv.VCSim, name string, n int) []string {
	tb.Helper()
	ctx := context.Background()
	c, err := sim.Client(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		tb.Fatal(err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	sub, err := folders.VmFolder.CreateFolder(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	vms, _ := sim.VMs(ctx)
	var moved []types.ManagedObjectReference
	var uuids []string
	for _, vm := range vms[:n] {
		moved = append(moved, vm.Reference())
		uuids = append(uuids, strings.ToLower(vm.Config.Uuid))
	}
	task, err := sub.MoveInto(ctx, moved)
	if err != nil || task.Wait(ctx) != nil {
		tb.Fatalf("moving VMs into %s: %v", name, err)
	}
	return uuids
}

// TestSnapshotSeesWhatTheIdentitySees: a user without permissions on a folder sees neither it nor
// its VMs; the snapshot says which folders it saw, so that their VMs are never taken for missing.
func TestSnapshotSeesWhatTheIdentitySees(t *testing.T) {
	sim := testenv.RequireVCSim(t, func(m *simulator.Model) { m.Machine = 3 })
	hidden := restrictedFolder(t, sim, "restricted", 2)
	sim.AddUser("tenant-a", "tenant-a-pw")
	sim.HideFolders("tenant-a", "restricted")
	c := target(t, sim, "edge", "/DC0/vm")
	c.VSphere = &infra.VSphereIdentity{Key: "Secret/fleet/tenant-a", Username: "tenant-a", Password: "tenant-a-pw"}
	snap, err := New(Options{}).Snapshot(context.Background(), []infra.Cluster{c})
	if err != nil || len(snap.Unavailable) > 0 {
		t.Fatalf("snapshot: %v %v", err, snap.Unavailable)
	}
	for _, i := range snap.Instances {
		if slices.Contains(hidden, i.ID) {
			t.Errorf("the tenant saw VM %s in a folder hidden from it", i.ID)
		}
	}
	if snap.Folders["fleet/edge"]["/DC0/vm/restricted"] || !snap.Folders["fleet/edge"]["/DC0/vm"] {
		t.Errorf("visible folders %v: want /DC0/vm and not /DC0/vm/restricted", snap.Folders["fleet/edge"])
	}
	if sim.Logins("tenant-a") != 1 {
		t.Errorf("%d logins as tenant-a, want 1", sim.Logins("tenant-a"))
	}
}

// TestSnapshotLogsInOncePerServerAndIdentity: clusters with the same identity share a session;
// each identity has its own.
func TestSnapshotLogsInOncePerServerAndIdentity(t *testing.T) {
	sim := testenv.RequireVCSim(t, nil)
	sim.AddUser("team-a", "a-pw")
	sim.AddUser("team-b", "b-pw")
	as := func(name, user, pw string) infra.Cluster {
		c := target(t, sim, name)
		c.VSphere = &infra.VSphereIdentity{Key: "VSphereClusterIdentity/" + user, Username: user, Password: pw}
		return c
	}
	_, err := New(Options{}).Snapshot(context.Background(), []infra.Cluster{as("a1", "team-a", "a-pw"), as("a2", "team-a", "a-pw"), as("b1", "team-b", "b-pw")})
	if err != nil {
		t.Fatal(err)
	}
	if sim.Logins("team-a") != 1 || sim.Logins("team-b") != 1 {
		t.Errorf("logins: team-a %d, team-b %d; want one session per identity", sim.Logins("team-a"), sim.Logins("team-b"))
	}
}

// TestSnapshotCountsAnUnreadableVMAsUnknown: a VM whose config cannot be read (inaccessible) is
// counted, so that a Machine's VM on that vCenter is not taken for missing.
func TestSnapshotCountsAnUnreadableVMAsUnknown(t *testing.T) {
	sim := testenv.RequireVCSim(t, func(m *simulator.Model) { m.Machine = 2 })
	vms, _ := sim.VMs(context.Background())
	vms[0].Config = nil
	snap, err := New(Options{}).Snapshot(context.Background(), []infra.Cluster{target(t, sim, "edge", "/DC0/vm")})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Unknown[sim.URL.Host] != 1 || len(snap.Instances) != len(vms)-1 {
		t.Errorf("unknown %v, %d instances of %d VMs", snap.Unknown, len(snap.Instances), len(vms))
	}
}
