package vsphere

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strings"

	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/driftd/driftd/internal/infra"
)

// Options configure a Provider; every field is optional.
type Options struct {
	// OnCall is called once per SOAP call with its method name (for metrics).
	OnCall func(operation string)
}

// Provider is the vSphere inventory.
type Provider struct {
	opts Options
}

// New returns a Provider.
func New(opts Options) *Provider { return &Provider{opts: opts} }

// Provider is infra.ProviderVSphere.
func (p *Provider) Provider() string { return infra.ProviderVSphere }

// vmProperties are the only VM properties read.
var vmProperties = []string{"name", "config.uuid", "config.hardware.numCPU", "config.hardware.memoryMB",
	"config.template", "config.createDate", "runtime.powerState", "parent"}

// Snapshot reads every VM of each vCenter the clusters live on.
func (p *Provider) Snapshot(ctx context.Context, clusters []infra.Cluster) (*infra.Snapshot, error) {
	snap := infra.NewSnapshot(infra.ProviderVSphere)
	byServer := map[string][]infra.Cluster{}
	for _, c := range clusters {
		if c.Server == "" {
			snap.Fail(fmt.Errorf("VSphereCluster %s/%s has no server", c.Namespace, c.Name))
			continue
		}
		byServer[c.Server] = append(byServer[c.Server], c)
	}
	servers := slices.Sorted(maps.Keys(byServer))
	count := snap.CallCounter(p.opts.OnCall)
	for _, server := range servers {
		if err := p.server(ctx, server, byServer[server], snap, count); err != nil {
			snap.Fail(fmt.Errorf("vCenter %s: %w", server, err))
		}
	}
	if !snap.Complete && len(snap.Instances) == 0 {
		return snap, errors.Join(snap.Errors...)
	}
	return snap, nil
}

func (p *Provider) server(ctx context.Context, server string, clusters []infra.Cluster, snap *infra.Snapshot, count func(string)) error {
	c := clusters[0]
	u, err := sdkURL(server)
	if err != nil {
		return err
	}
	sc := soap.NewClient(u, false)
	if c.Thumbprint != "" {
		sc.SetThumbprint(u.Host, c.Thumbprint)
	}
	count("RetrieveServiceContent")
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return err
	}
	vc.RoundTripper = &countingRoundTripper{RoundTripper: vc.RoundTripper, count: count}
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(c.Username, c.Password)); err != nil {
		return fmt.Errorf("login as %q: %w", c.Username, err)
	}
	defer func() { _ = sm.Logout(context.WithoutCancel(ctx)) }()

	cv, err := view.NewManager(vc).CreateContainerView(ctx, vc.ServiceContent.RootFolder, []string{"VirtualMachine", "Folder", "Datacenter"}, true)
	if err != nil {
		return err
	}
	defer func() { _ = cv.Destroy(context.WithoutCancel(ctx)) }()
	var content []types.ObjectContent
	if err := cv.Retrieve(ctx, []string{"VirtualMachine"}, vmProperties, &content,
		types.PropertySpec{Type: "Folder", PathSet: []string{"name", "parent"}},
		types.PropertySpec{Type: "Datacenter", PathSet: []string{"name", "parent"}},
	); err != nil {
		return err
	}
	names, parents := map[types.ManagedObjectReference]string{}, map[types.ManagedObjectReference]types.ManagedObjectReference{}
	var vms []mo.VirtualMachine
	for _, oc := range content {
		obj, err := mo.ObjectContentToType(oc)
		if err != nil {
			return err
		}
		switch o := obj.(type) {
		case mo.VirtualMachine:
			vms = append(vms, o)
		case mo.Folder:
			names[o.Self], parents[o.Self] = o.Name, ref(o.Parent)
		case mo.Datacenter:
			names[o.Self], parents[o.Self] = o.Name, ref(o.Parent)
		}
	}
	folderPath := func(r types.ManagedObjectReference) string {
		var parts []string
		for cur := r; cur.Value != ""; cur = parents[cur] {
			if cur == vc.ServiceContent.RootFolder {
				break
			}
			parts = append([]string{names[cur]}, parts...)
		}
		return "/" + strings.Join(parts, "/")
	}
	for _, vm := range vms {
		if vm.Config == nil || vm.Config.Template {
			continue
		}
		inst := infra.Instance{
			Provider: infra.ProviderVSphere, ID: strings.ToLower(vm.Config.Uuid), Name: vm.Name, Region: server,
			CPUs: vm.Config.Hardware.NumCPU, MemoryMiB: int64(vm.Config.Hardware.MemoryMB), State: powerState(vm.Runtime.PowerState),
			Folder: folderPath(ref(vm.Parent)),
		}
		inst.ProviderID = infra.VSphereProviderID(inst.ID)
		if vm.Config.CreateDate != nil {
			inst.LaunchTime = *vm.Config.CreateDate
		}
		inst.Cluster = clusterOfFolder(inst.Folder, clusters)
		snap.Instances = append(snap.Instances, inst)
	}
	return nil
}

// clusterOfFolder returns the cluster whose folder holds a VM. A cluster's folder may be a full
// inventory path or a folder name; a VM in a sub-folder belongs to it too.
func clusterOfFolder(folder string, clusters []infra.Cluster) string {
	for _, c := range clusters {
		for _, f := range c.Folders {
			f = strings.TrimSuffix(f, "/")
			if f == "" {
				continue
			}
			if strings.HasPrefix(f, "/") {
				if folder == f || strings.HasPrefix(folder, f+"/") {
					return c.Name
				}
				continue
			}
			if path.Base(folder) == f || strings.Contains(folder+"/", "/"+f+"/") {
				return c.Name
			}
		}
	}
	return ""
}

func ref(r *types.ManagedObjectReference) types.ManagedObjectReference {
	if r == nil {
		return types.ManagedObjectReference{}
	}
	return *r
}

func powerState(s types.VirtualMachinePowerState) string {
	switch s {
	case types.VirtualMachinePowerStatePoweredOn:
		return infra.StateRunning
	case types.VirtualMachinePowerStatePoweredOff:
		return infra.StateStopped
	case types.VirtualMachinePowerStateSuspended:
		return infra.StateSuspended
	}
	return string(s)
}

// sdkURL turns a VSphereCluster's server (a host name, host:port or URL) into the SDK endpoint.
func sdkURL(server string) (*url.URL, error) {
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", server, err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = vim25.Path
	}
	u.User = nil
	return u, nil
}

// countingRoundTripper counts SOAP calls by method.
type countingRoundTripper struct {
	soap.RoundTripper
	count func(string)
}

func (c *countingRoundTripper) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	c.count(strings.TrimSuffix(reflect.TypeOf(req).Elem().Name(), "Body"))
	return c.RoundTripper.RoundTrip(ctx, req, res)
}
