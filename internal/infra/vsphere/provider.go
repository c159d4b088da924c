package vsphere

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/driftd/driftd/internal/egress"
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

// Snapshot reads every VM of each vCenter the clusters live on, one session per (server,
// identity): each cluster is read with its own credentials. A session that fails makes its clusters
// unavailable; the others stand.
func (p *Provider) Snapshot(ctx context.Context, clusters []infra.Cluster) (*infra.Snapshot, error) {
	snap := infra.NewSnapshot(infra.ProviderVSphere)
	type session struct{ server, identity string }
	groups := map[session][]infra.Cluster{}
	identities := map[string]*infra.VSphereIdentity{}
	thumbprints := map[string]string{}
	for _, c := range clusters {
		if c.VSphere == nil {
			snap.FailClusters(fmt.Errorf("VSphereCluster %s: no identity to log in with", c.Key()), c)
			continue
		}
		vcenters := c.VCenters
		if len(vcenters) == 0 {
			vcenters = []infra.VCenter{{Server: c.Server, Thumbprint: c.Thumbprint}}
		}
		for _, vc := range vcenters {
			if vc.Server == "" {
				snap.FailClusters(fmt.Errorf("VSphereCluster %s has no server", c.Key()), c)
				continue
			}
			if t, ok := thumbprints[vc.Server]; ok && t != vc.Thumbprint {
				snap.FailClusters(fmt.Errorf("vCenter %s: clusters name different thumbprints for it", vc.Server), c)
				continue
			}
			thumbprints[vc.Server] = vc.Thumbprint
			identities[c.VSphere.Key] = c.VSphere
			groups[session{vc.Server, c.VSphere.Key}] = append(groups[session{vc.Server, c.VSphere.Key}], c)
		}
	}
	sessions := slices.SortedFunc(maps.Keys(groups), func(a, b session) int {
		return strings.Compare(a.server+"\x00"+a.identity, b.server+"\x00"+b.identity)
	})
	count := snap.CallCounter(p.opts.OnCall)
	seen := map[string]bool{} // server/uuid: a VM two sessions see is listed once
	for _, s := range sessions {
		members := groups[s]
		if err := p.server(ctx, s.server, thumbprints[s.server], identities[s.identity], members, snap, seen, count); err != nil {
			snap.FailClusters(fmt.Errorf("vCenter %s as %s: %w", s.server, s.identity, err), members...)
		}
	}
	if len(snap.Unavailable) > 0 && len(snap.Unavailable) == len(clusters) {
		snap.Complete = false
		return snap, errors.Join(snap.Errors...)
	}
	return snap, nil
}

func (p *Provider) server(ctx context.Context, server, thumbprint string, id *infra.VSphereIdentity, clusters []infra.Cluster,
	snap *infra.Snapshot, seen map[string]bool, count func(string)) error {
	u, err := sdkURL(server)
	if err != nil {
		return err
	}
	sc := soap.NewClient(u, false)
	// A transport of its own with Go's usual settings (soap.NewClient copies them from Go's default
	// transport, which driftd makes refuse everything).
	t, own := sc.DefaultTransport(), egress.NewTransport()
	t.Proxy, t.DialContext, t.MaxIdleConns, t.IdleConnTimeout = own.Proxy, own.DialContext, own.MaxIdleConns, own.IdleConnTimeout
	t.TLSHandshakeTimeout, t.ExpectContinueTimeout = own.TLSHandshakeTimeout, own.ExpectContinueTimeout
	if thumbprint != "" {
		sc.SetThumbprint(u.Host, thumbprint)
	}
	count("RetrieveServiceContent")
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return err
	}
	vc.RoundTripper = &countingRoundTripper{RoundTripper: vc.RoundTripper, count: count}
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(id.Username, id.Password)); err != nil {
		return fmt.Errorf("login: %w", err)
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
	var folders []types.ManagedObjectReference
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
			folders = append(folders, o.Self)
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
	// What this identity can see: its clusters' machines in folders it cannot see are unknown.
	for _, c := range clusters {
		visible := snap.Folders[c.Key()]
		if visible == nil {
			visible = map[string]bool{}
			snap.Folders[c.Key()] = visible
		}
		for _, f := range folders {
			visible[folderPath(f)] = true
		}
	}
	for _, vm := range vms {
		if vm.Config == nil {
			// Inaccessible (a datastore outage, an orphaned VM): its UUID cannot be read, so any
			// Machine's VM on this server might be this one.
			snap.Unknown[server]++
			continue
		}
		if vm.Config.Template {
			continue
		}
		id := strings.ToLower(vm.Config.Uuid)
		if seen[server+"/"+id] {
			continue
		}
		seen[server+"/"+id] = true
		inst := infra.Instance{
			Provider: infra.ProviderVSphere, ID: id, Name: vm.Name, Region: server,
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

// clusterOfFolder returns the cluster (Key) whose folder holds a VM. A cluster's folder may be a
// full inventory path or a folder name; a VM in a sub-folder belongs to it too.
func clusterOfFolder(folder string, clusters []infra.Cluster) string {
	for _, c := range clusters {
		for _, f := range c.Folders {
			if infra.FolderHolds(f, folder) {
				return c.Key()
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
	if err := infra.SecureVCenter(server); err != nil {
		return nil, err
	}
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
