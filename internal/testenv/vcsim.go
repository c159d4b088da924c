package testenv

import (
	"context"
	"crypto/tls"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// VCSim is govmomi's vSphere simulator, serving a vCenter API on a loopback port in-process. It
// knows users (the one in URL, and those AddUser adds), counts their logins, and can hide folders
// from a user the way a vCenter's permissions do: a user's container views leave them out.
type VCSim struct {
	// URL reaches the SDK endpoint and carries the simulator's administrator and password.
	URL *url.URL
	// Model is the simulated inventory; tests may change it before the server starts.
	Model *simulator.Model

	server *simulator.Server

	mu     sync.Mutex
	users  map[string]string   // user → password
	logins map[string]int      // user → successful logins
	hidden map[string][]string // user → names of folders hidden from them
	expire bool                // retrieves answered NotAuthenticated
}

// vcsimAdmin is the simulator's administrator.
var vcsimAdmin = url.UserPassword("administrator@vsphere.local", "vcsim-admin-pw")

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
	model.Service.Listen = &url.URL{User: vcsimAdmin}
	v := &VCSim{Model: model, users: map[string]string{}, logins: map[string]int{}, hidden: map[string][]string{}}
	pw, _ := vcsimAdmin.Password()
	v.users[vcsimAdmin.Username()] = pw
	reg := model.Map()
	reg.SessionManager().ValidLogin = v.validLogin
	reg.Handler = v.handle
	vm := reg.ViewManager()
	reg.Put(&permissionedViewManager{ViewManager: vm, sim: v})
	v.server = model.Service.NewServer()
	v.URL = v.server.URL
	return v, nil
}

func (v *VCSim) validLogin(req *types.Login) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if pw, ok := v.users[req.UserName]; ok && pw == req.Password {
		v.logins[req.UserName]++
		return true
	}
	return false
}

// AddUser lets user log in with password.
func (v *VCSim) AddUser(user, password string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.users[user] = password
}

// Logins returns how many times user logged in.
func (v *VCSim) Logins(user string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.logins[user]
}

// HideFolders hides the folders named folders, and everything in them, from user.
func (v *VCSim) HideFolders(user string, folders ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.hidden[user] = append(v.hidden[user], folders...)
}

// ExpireSessions, while on, answers every retrieve of properties with NotAuthenticated, the
// fault a vCenter answers when the session ended between login and retrieve (timed out, or
// terminated by an administrator in the middle of a read).
func (v *VCSim) ExpireSessions(on bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.expire = on
}

// handle is the simulator's hook before each method: the place for faults of the session.
func (v *VCSim) handle(_ *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.expire && (m.Name == "RetrievePropertiesEx" || m.Name == "ContinueRetrievePropertiesEx") {
		return nil, &types.NotAuthenticated{NoPermission: types.NoPermission{Object: &m.This, PrivilegeId: "System.View"}}
	}
	return nil, nil
}

// permissionedViewManager leaves out of a user's container views what the user may not see, as a
// vCenter's permissions do.
type permissionedViewManager struct {
	*simulator.ViewManager
	sim *VCSim
}

func (m *permissionedViewManager) CreateContainerView(ctx *simulator.Context, req *types.CreateContainerView) soap.HasFault {
	res := m.ViewManager.CreateContainerView(ctx, req)
	body, ok := res.(*methods.CreateContainerViewBody)
	if !ok || body.Res == nil || ctx.Session == nil {
		return res
	}
	m.sim.mu.Lock()
	hidden := append([]string(nil), m.sim.hidden[ctx.Session.UserName]...)
	m.sim.mu.Unlock()
	if len(hidden) == 0 {
		return res
	}
	view, ok := ctx.Session.Registry.Get(body.Res.Returnval).(*simulator.ContainerView)
	if !ok {
		return res
	}
	kept := view.View[:0]
	for _, ref := range view.View {
		if !underHidden(ctx, ref, hidden) {
			kept = append(kept, ref)
		}
	}
	view.View = kept
	return res
}

// underHidden reports whether the object ref is a folder named in hidden or lies in one.
func underHidden(ctx *simulator.Context, ref types.ManagedObjectReference, hidden []string) bool {
	for cur := ref; cur.Value != ""; {
		obj := ctx.Map.Get(cur)
		if obj == nil {
			return false
		}
		if f, ok := obj.(*simulator.Folder); ok && slices.Contains(hidden, f.Name) {
			return true
		}
		e, ok := obj.(mo.Entity)
		if !ok || e.Entity().Parent == nil {
			return false
		}
		cur = *e.Entity().Parent
	}
	return false
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
