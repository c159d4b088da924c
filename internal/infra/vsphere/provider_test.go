package vsphere

import (
	"context"
	"strings"
	"testing"

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
