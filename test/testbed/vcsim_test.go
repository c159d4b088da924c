package testbed

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/driftd/driftd/internal/testenv"
)

// countingRoundTripper counts the SOAP calls a vSphere client makes, by method.
type countingRoundTripper struct {
	soap.RoundTripper
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingRoundTripper) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	c.mu.Lock()
	c.calls[reflect.TypeOf(req).Elem().Name()]++
	c.mu.Unlock()
	return c.RoundTripper.RoundTrip(ctx, req, res)
}

func TestVCSimServesEveryVMInOnePropertyCollectorRoundTrip(t *testing.T) {
	ctx := context.Background()
	sim := testenv.RequireVCSim(t, func(m *simulator.Model) {
		m.Host, m.ClusterHost, m.Machine = 2, 3, 4 // VMs on standalone hosts and in the cluster's pool
	})
	c, err := sim.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counter := &countingRoundTripper{RoundTripper: c.Client.RoundTripper, calls: map[string]int{}}
	c.Client.RoundTripper = counter

	cv, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer cv.Destroy(ctx)

	// Power one VM off and resize another, so the VMs differ in what is read.
	refs, err := cv.Find(ctx, []string{"VirtualMachine"}, nil)
	if err != nil || len(refs) < 2 {
		t.Fatalf("finding VMs: %v (%d found)", err, len(refs))
	}
	powerOff, err := object.NewVirtualMachine(c.Client, refs[0]).PowerOff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resize, err := object.NewVirtualMachine(c.Client, refs[1]).Reconfigure(ctx, types.VirtualMachineConfigSpec{NumCPUs: 8, MemoryMB: 16384})
	if err != nil {
		t.Fatal(err)
	}
	if err := powerOff.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := resize.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	counter.calls = map[string]int{}
	var vms []mo.VirtualMachine
	props := []string{"name", "config.uuid", "config.hardware.numCPU", "config.hardware.memoryMB", "runtime.powerState"}
	if err := cv.Retrieve(ctx, []string{"VirtualMachine"}, props, &vms); err != nil {
		t.Fatalf("retrieving VMs: %v", err)
	}
	if got := counter.calls; len(got) != 1 || got["RetrievePropertiesExBody"] != 1 {
		t.Errorf("SOAP calls to read every VM = %v, want exactly one RetrievePropertiesEx", got)
	}

	want := simulatedVMs(t, sim)
	var off, big int
	for _, vm := range vms {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
			off++
		}
		if vm.Config != nil && vm.Config.Hardware.NumCPU == 8 {
			big++
		}
	}
	if off != 1 || big != 1 {
		t.Errorf("retrieved %d powered-off and %d 8-CPU VMs, want 1 of each", off, big)
	}
	if len(vms) != len(want) || len(want) == 0 {
		t.Fatalf("retrieved %d VMs, the simulator holds %d", len(vms), len(want))
	}
	for _, vm := range vms {
		if vm.Config == nil {
			t.Fatalf("VM %s came back without config", vm.Name)
		}
		got := fmt.Sprintf("%s uuid=%s cpu=%d mem=%d power=%s", vm.Name, vm.Config.Uuid,
			vm.Config.Hardware.NumCPU, vm.Config.Hardware.MemoryMB, vm.Runtime.PowerState)
		if w := want[vm.Self.Value]; got != w {
			t.Errorf("VM %s:\n got %s\nwant %s", vm.Self.Value, got, w)
		}
	}
}

// simulatedVMs describes every VM the simulator holds, read from its model rather than the API.
func simulatedVMs(tb testing.TB, sim *testenv.VCSim) map[string]string {
	tb.Helper()
	out := map[string]string{}
	reg := sim.Model.Map()
	for _, ref := range reg.All("VirtualMachine") {
		vm := reg.Get(ref.Reference()).(*simulator.VirtualMachine)
		out[ref.Reference().Value] = fmt.Sprintf("%s uuid=%s cpu=%d mem=%d power=%s", vm.Name, vm.Config.Uuid,
			vm.Config.Hardware.NumCPU, vm.Config.Hardware.MemoryMB, vm.Runtime.PowerState)
	}
	return out
}
