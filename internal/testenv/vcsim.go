package testenv

import (
	"context"
	"crypto/tls"
	"net/url"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
)

// VCSim is govmomi's vSphere simulator, serving a vCenter API on a loopback port in-process.
type VCSim struct {
	// URL reaches the SDK endpoint and carries the simulator's user and password.
	URL *url.URL
	// Model is the simulated inventory; tests may change it before the server starts.
	Model *simulator.Model

	server *simulator.Server
}

// StartVCSim starts a simulated vCenter. configure, when not nil, sizes the model (datacenters,
// hosts, VMs, ...) before it is created; the default is simulator.VPX's inventory.
func StartVCSim(configure func(*simulator.Model)) (*VCSim, error) {
	model := simulator.VPX()
	if configure != nil {
		configure(model)
	}
	if err := model.Create(); err != nil {
		model.Remove()
		return nil, err
	}
	model.Service.TLS = new(tls.Config) // serve HTTPS, as a vCenter does, so thumbprints are checked
	server := model.Service.NewServer()
	return &VCSim{URL: server.URL, Model: model, server: server}, nil
}

// Stop shuts the server down and removes the model's files.
func (v *VCSim) Stop() {
	v.server.Close()
	v.Model.Remove()
}

// Client logs in to the simulator.
func (v *VCSim) Client(ctx context.Context) (*govmomi.Client, error) {
	return govmomi.NewClient(ctx, v.URL, true)
}

// RequireVCSim starts a simulated vCenter for the test and stops it when the test ends.
func RequireVCSim(tb testing.TB, configure func(*simulator.Model)) *VCSim {
	tb.Helper()
	v, err := StartVCSim(configure)
	if err != nil {
		Unavailable(tb, "vSphere simulator: %v", err)
	}
	tb.Cleanup(v.Stop)
	return v
}

// Thumbprint is the SHA-1 thumbprint of the simulator's TLS certificate, as a VSphereCluster's
// spec.thumbprint holds it.
func (v *VCSim) Thumbprint() string {
	return soap.ThumbprintSHA1(v.server.Certificate())
}

// VMs lists the simulator's VMs with their config, read from its model.
func (v *VCSim) VMs(ctx context.Context) ([]*simulator.VirtualMachine, error) {
	reg := v.Model.Map()
	var out []*simulator.VirtualMachine
	for _, ref := range reg.All("VirtualMachine") {
		if vm, ok := reg.Get(ref.Reference()).(*simulator.VirtualMachine); ok {
			out = append(out, vm)
		}
	}
	return out, nil
}
