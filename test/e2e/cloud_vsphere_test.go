package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/testenv"
)

// vsphereMachines runs the fleet of ns — one cluster, vs1, on a simulated vCenter of machines VMs,
// its identity Secret created as CAPV's users create it — and provisions a Machine for each VM
// (vs1-md-0-m0, m1, ...). It returns the simulator, the arguments of a run that reads vSphere, and
// the VMs by their Machine's name.
func vsphereMachines(t *testing.T, ns string, machines int) (*testenv.VCSim, []string, map[string]*simulator.VirtualMachine) {
	t.Helper()
	ctx := context.Background()
	sim := testenv.RequireVCSim(t, func(m *simulator.Model) { m.Machine = machines })
	user := sim.URL.User.Username()
	password, _ := sim.URL.User.Password()
	repo := testenv.NewGitRepo(t, vsphereFleet(ns, "vs1", sim.URL.Host, sim.Thumbprint(), "Secret/vs1-credentials", nil))
	drv.RunOnce(t, ns, drv.Args(t, repo.Dir, ns)...) // the fleet, Namespace first
	// The identity Secret CAPV reads; a real fleet keeps it sealed, here it is created directly.
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vs1-credentials"},
		StringData: map[string]string{"username": user, "password": password}}); err != nil {
		t.Fatal(err)
	}
	args := append(drv.Args(t, repo.Dir, ns), "--provider", "vsphere")
	drv.RunOnce(t, ns, args...)

	vms, err := sim.VMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*simulator.VirtualMachine{}
	for i, vm := range vms {
		name := fmt.Sprintf("vs1-md-0-m%d", i)
		byName[name] = vm
		env.ProvisionMachine(t, ns, "vs1", "md-0", name, "vsphere://"+strings.ToLower(vm.Config.Uuid), gvkVSMachine, map[string]any{
			"server": sim.URL.Host, "template": "ubuntu-2204", "folder": "/DC0/vm",
			"numCPUs": int64(vm.Config.Hardware.NumCPU), "memoryMiB": int64(vm.Config.Hardware.MemoryMB),
			"network": map[string]any{"devices": []any{map[string]any{"networkName": "VM Network", "dhcp4": true}}},
		})
	}
	return sim, args, byName
}

func TestCloudDriftOnVSphere(t *testing.T) {
	ctx := context.Background()
	sim, args, byName := vsphereMachines(t, "cloud-vsphere", 2)
	password, _ := sim.URL.User.Password()
	if len(byName) < 3 {
		t.Fatalf("the simulator has only %d VMs", len(byName))
	}
	if code, doc, stderr := drv.Plan(t, args...); code != 0 {
		t.Fatalf("plan of VMs equal to their Machines: exit %d, findings %+v\n%s", code, doc.Findings, stderr)
	}
	c, err := sim.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vmObj := func(name string) *object.VirtualMachine {
		return object.NewVirtualMachine(c.Client, byName[name].Reference())
	}
	wait := func(what string, task *object.Task, err error) {
		t.Helper()
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Out of band, in vCenter: one VM resized, one powered off, one destroyed, one created.
	task, err := vmObj("vs1-md-0-m0").Reconfigure(ctx, types.VirtualMachineConfigSpec{NumCPUs: 16, MemoryMB: 65536})
	wait("reconfigure", task, err)
	task, err = vmObj("vs1-md-0-m1").PowerOff(ctx)
	wait("power off", task, err)
	task, err = vmObj("vs1-md-0-m2").PowerOff(ctx)
	wait("power off", task, err)
	task, err = vmObj("vs1-md-0-m2").Destroy(ctx)
	wait("destroy", task, err)
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	folder, err := finder.Folder(ctx, "/DC0/vm")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := finder.ResourcePool(ctx, "/DC0/host/DC0_C0/Resources")
	if err != nil {
		t.Fatal(err)
	}
	task, err = folder.CreateVM(ctx, types.VirtualMachineConfigSpec{Name: "stray", GuestId: "otherGuest", NumCPUs: 2, MemoryMB: 2048,
		Files: &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"}}, pool, nil)
	wait("create VM", task, err)

	_, doc, stderr := drv.Plan(t, append(append([]string{}, args...), "--unmanaged-grace", "0s")...)
	if f := doc.Finding("Machine", "vs1-md-0-m0"); f == nil || f.Class != diff.ClassInstanceMismatch || len(f.Fields) != 2 ||
		f.Fields[0].Path != "/spec/numCPUs" || f.Fields[0].Live != float64(16) || f.Fields[1].Path != "/spec/memoryMiB" || f.Fields[1].Live != float64(65536) {
		t.Errorf("resized VM: finding %+v, want InstanceMismatch on numCPUs and memoryMiB", f)
	}
	if f := doc.Finding("Machine", "vs1-md-0-m1"); f == nil || f.Class != diff.ClassInstanceStopped {
		t.Errorf("powered-off VM: finding %+v, want InstanceStopped", f)
	}
	if f := doc.Finding("Machine", "vs1-md-0-m2"); f == nil || f.Class != diff.ClassInstanceMissing {
		t.Errorf("destroyed VM: finding %+v, want InstanceMissing", f)
	}
	unmanaged := false
	for _, f := range doc.Findings {
		unmanaged = unmanaged || (f.Class == diff.ClassUnmanagedInstance && f.Instance != nil && f.Instance.Name == "stray" && f.Cluster == "vs1")
	}
	if !unmanaged {
		t.Errorf("findings %+v lack the stray VM as UnmanagedInstance\n%s", doc.Findings, stderr)
	}
	for _, out := range []string{stderr} {
		if strings.Contains(out, password) {
			t.Error("the vCenter password appears in driftd's output")
		}
	}
}
