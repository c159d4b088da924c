package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/driftd/driftd/internal/apply"
	"github.com/driftd/driftd/internal/cloud"
	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/render"
	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/source"
)

// ErrNoRevision means no revision was ever fetched and rendered: there is nothing to compare with.
var ErrNoRevision = errors.New("no good revision of the fleet yet")

// snapshot is the desired state of one render. It is never changed once published: a new render,
// a source failure or a kind that became served publishes a new one.
type snapshot struct {
	commit, revision string
	// objects, renderErrs and renderPartial are the render as it came, kept to resolve it again
	// once a rendered CRD is served.
	objects       []render.EncodedObject
	renderErrs    []error
	renderPartial bool
	// desired are the objects this instance handles, by key, and order their keys in apply stages.
	desired map[diff.Key]*desiredObject
	order   []diff.Key
	// clusters maps each rendered object to its cluster; parts lists the objects of each cluster
	// ("namespace/name") that this instance handles.
	clusters diff.Clusters
	parts    map[string][]diff.Key
	// rendered are the keys of every rendered object, of every shard, and gitClusters the
	// Clusters in Git ("namespace/name"): objects another shard handles are never orphans.
	rendered    map[diff.Key]bool
	gitClusters map[string]bool
	// namespaces are the Namespaces the render brings.
	namespaces map[string]bool
	// kinds are the kinds of order that are served, each once, in stage order.
	kinds []schema.GroupVersionKind
	// pending are objects whose kind a CRD of the render defines and the API server does not
	// serve yet: they are created once that CRD is.
	pending []diff.Key
	// partial: some objects could not be rendered or used; errs say which and why. No orphan is
	// looked for in a partial render.
	partial bool
	errs    []error
	// degraded says why corrections are off (the last fetch or render failed), or "".
	degraded string
	// view is the snapshot as the cloud reconciler sees it, made on first use (shared by the
	// copies degrade makes: they render the same objects).
	view *renderedView
}

type renderedView struct {
	once sync.Once
	r    *cloud.Rendered
}

// desiredObject is one rendered object, ready to dry-run and apply. It holds the object as JSON
// and decodes it (object) only to compare, apply or report it: a quiet cycle reads nothing but
// its identity, hash and, for a Cluster, whether Git pauses it. A decoded object takes three to
// four times the memory of its JSON, and a large fleet's snapshot is the daemon's largest part.
type desiredObject struct {
	raw             []byte
	gvk             schema.GroupVersionKind
	namespace, name string
	file            string
	hash            uint64
	stage           int
	// For a Cluster: its labels (its shard, its rollout wave), whether Git pauses it
	// (diff.IsPaused) and whether its topology has MachineDeployments.
	labels           map[string]string
	paused, topology bool
}

func newDesiredObject(obj *unstructured.Unstructured, raw []byte, file string) *desiredObject {
	d := &desiredObject{
		raw: bytes.Clone(raw), gvk: obj.GroupVersionKind(), namespace: obj.GetNamespace(), name: obj.GetName(),
		file: file, hash: hashObject(raw), stage: apply.Stage(obj),
	}
	if d.gvk.GroupKind() == diff.GVKCluster.GroupKind() {
		_, d.topology, _ = unstructured.NestedSlice(obj.Object, "spec", "topology", "workers", "machineDeployments")
		d.labels, d.paused = obj.GetLabels(), diff.IsPaused(obj)
	}
	return d
}

// object decodes the desired object: a copy of its own, which the caller may change.
func (d *desiredObject) object() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(d.raw); err != nil {
		// raw is what MarshalJSON made of a decoded object. Carrying on with less than the
		// object could apply less than Git holds; nothing is written instead.
		panic(fmt.Sprintf("%s: %s %s/%s does not decode again: %v", d.file, d.gvk.Kind, d.namespace, d.name, err))
	}
	return u
}

// ref is the desired object's type and name (and a Cluster's labels), to read its live object by.
func (d *desiredObject) ref() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: d.namespace, Name: d.name, Labels: d.labels}}
	m.SetGroupVersionKind(d.gvk)
	return m
}

// refresh fetches the source and, when the commit moved (or a pending kind may be served now),
// renders it and publishes a new snapshot. A failure keeps the last good render, published again
// with corrections off. It holds no lock the per-object path needs. The render runs in rctx,
// which has no deadline but the render's own.
func (e *Engine) refresh(ctx, rctx context.Context) (*snapshot, []error, error) {
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	cur := e.snap.Load()
	var errs []error
	next := cur
	if err := e.restoreVerified(ctx); err != nil {
		// Without the remembered commit a rollback could pass unnoticed: nothing is fetched.
		errs = append(errs, e.sourceTrouble(report.ReasonSourceVerificationFailed, err))
		next = degrade(cur, "the last verified commit cannot be read")
		if next == nil {
			return nil, errs, errors.Join(append(errs, ErrNoRevision)...)
		}
		if next != cur {
			e.publish(next)
		}
		return next, errs, nil
	}
	co, err := e.deps.Source.Fetch(ctx)
	if err == nil {
		e.rememberVerified(ctx)
	}
	var refused *source.VerificationError
	switch {
	case errors.As(err, &refused):
		errs = append(errs, e.sourceTrouble(report.ReasonSourceVerificationFailed, err))
		next = degrade(cur, "commit "+refused.Commit+" is not signed by a trusted key")
	case err != nil:
		errs = append(errs, e.sourceTrouble(report.ReasonSourceFetchFailed, err))
		next = degrade(cur, "the source cannot be fetched")
	case co.Commit == e.failed:
		// This commit's render failed already: it is not rendered again (it would fail, or hang
		// until its deadline, again) until the branch moves or driftd restarts.
		next = degrade(cur, "the render of "+co.Revision()+" failed")
	case cur == nil || co.Commit != cur.commit:
		rendered, rerr := e.render(rctx, co, cur != nil)
		if rerr != nil && rctx.Err() == nil {
			e.failed = co.Commit
		}
		switch {
		case errors.Is(rerr, render.ErrEmptyRender):
			errs = append(errs, e.sourceTrouble(report.ReasonEmptyRender, fmt.Errorf("%s: %w; keeping %s", co.Revision(), rerr, orNone(cur))))
			next = degrade(cur, "the render of "+co.Revision()+" is empty")
		case rerr != nil:
			errs = append(errs, e.sourceTrouble(report.ReasonRenderFailed, fmt.Errorf("%s: %w", co.Revision(), rerr)))
			next = degrade(cur, "the render of "+co.Revision()+" failed")
		default:
			e.failed = ""
			next = e.resolve(co.Commit, co.Revision(), rendered.Objects, rendered.Errors, rendered.Partial)
			if len(next.errs) > 0 {
				e.warn(report.ReasonRenderFailed, fmt.Errorf("%s rendered without the parts that cannot be used: %w", next.revision, errors.Join(next.errs...)))
			}
			e.ledger.Metrics().SetRevision(next.revision)
			e.deps.Log.Info("Rendered the fleet", "revision", next.revision, "objects", len(next.desired), "partial", next.partial)
		}
	case len(cur.pending) > 0:
		next = e.resolve(cur.commit, cur.revision, cur.objects, cur.renderErrs, cur.renderPartial)
	default:
		next = degrade(cur, "")
	}
	if next == nil {
		return nil, errs, errors.Join(append(errs, ErrNoRevision)...)
	}
	if next != cur {
		e.publish(next)
	}
	return next, append(errs, next.errs...), nil
}

// Prepare readies a standby to take over: it fetches the source and keeps the render of its head
// (Deps.Renders), so that the first cycle after an election renders nothing new. It reads and
// writes nothing in the cluster, and does nothing once a cycle ran. It holds the refresh lock: a
// cycle never fetches while it renders. The source verifies (--verify-signatures) what it
// fetches, but the last verified commit the leader remembered is handed to it only by the first
// cycle: a render kept here is used only for the commit that cycle's own fetch accepts.
func (e *Engine) Prepare(ctx context.Context) error {
	if e.deps.Renders == nil {
		return nil
	}
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	if e.snap.Load() != nil {
		return nil
	}
	co, err := e.deps.Source.Fetch(ctx)
	if err != nil {
		return err
	}
	if co.Commit == e.prepared {
		return nil
	}
	rendered, err := e.render(ctx, co, true)
	if err != nil {
		// Not tried again here; the first cycle after an election renders it in the foreground
		// and reports what fails.
		if ctx.Err() == nil {
			e.prepared = co.Commit
		}
		return fmt.Errorf("rendering %s: %w", co.Revision(), err)
	}
	e.prepared = co.Commit
	e.deps.Log.Info("Kept the render of the head for a takeover", "revision", co.Revision(), "objects", len(rendered.Objects))
	return nil
}

// render renders co, or takes the render kept of its commit (an earlier process rendered it),
// and keeps a complete render for the next process.
func (e *Engine) render(ctx context.Context, co *source.Checkout, background bool) (*render.Encoded, error) {
	if e.deps.Renders != nil {
		kept, err := e.deps.Renders.Load(co.Commit, e.opts.Path)
		if err != nil {
			e.deps.Log.Error(err, "The kept render cannot be used; rendering again", "revision", co.Revision())
		}
		if kept != nil {
			e.deps.Log.Info("Took the render kept of this commit", "revision", co.Revision(), "objects", len(kept.Objects))
			return kept, nil
		}
	}
	rendered, err := e.deps.Render.Render(ctx, co.Dir, e.opts.Path, background)
	if err == nil && e.deps.Renders != nil {
		if serr := e.deps.Renders.Store(co.Commit, e.opts.Path, rendered); serr != nil {
			e.deps.Log.Error(serr, "The render cannot be kept for a restart", "revision", co.Revision())
		}
	}
	return rendered, err
}

// restoreVerified hands the source the last verified commit an earlier driftd remembered, once.
func (e *Engine) restoreVerified(ctx context.Context) error {
	v, ok := e.deps.Source.(Verifier)
	if !ok || e.deps.Verified == nil || e.verifiedLoaded {
		return nil
	}
	commit, err := e.deps.Verified.Load(ctx)
	if err != nil && e.deps.VerifiedReadOnly {
		// plan only reports: it goes on without (and says so).
		e.deps.Log.Info("Cannot read the last verified commit; this plan does not check for a rollback", "error", err.Error())
		e.verifiedLoaded = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("the last verified commit: %w", err)
	}
	e.verifiedLoaded, e.verifiedSaved = true, commit
	if commit != "" {
		v.SetLastVerified(commit)
	}
	return nil
}

// rememberVerified stores the source's last verified commit when it moved.
func (e *Engine) rememberVerified(ctx context.Context) {
	v, ok := e.deps.Source.(Verifier)
	if !ok || e.deps.Verified == nil || e.deps.VerifiedReadOnly {
		return
	}
	commit := v.LastVerified()
	if commit == "" || commit == e.verifiedSaved {
		return
	}
	if err := e.deps.Verified.Save(ctx, commit); err != nil {
		e.deps.Log.Error(err, "Cannot remember the last verified commit; a restart accepts any signed descendant of the one remembered before")
		return
	}
	e.verifiedSaved = commit
}

// resolvePending resolves the current render again once CRDs it brings were created, so that the
// objects of their kinds are created in the same cycle.
func (e *Engine) resolvePending() *snapshot {
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	cur := e.snap.Load()
	if cur == nil || len(cur.pending) == 0 {
		return cur
	}
	next := e.resolve(cur.commit, cur.revision, cur.objects, cur.renderErrs, cur.renderPartial)
	next.degraded = cur.degraded
	e.publish(next)
	return next
}

// degrade returns s with corrections off for reason (or on again when reason is ""); s itself is
// not changed.
func degrade(s *snapshot, reason string) *snapshot {
	if s == nil || s.degraded == reason {
		return s
	}
	c := *s
	c.degraded = reason
	return &c
}

// publish makes s the desired state and forgets what is known of objects no longer in it.
func (e *Engine) publish(s *snapshot) {
	e.snap.Store(s)
	keep := make(map[diff.Key]bool, len(s.desired))
	for key := range s.desired {
		keep[key] = true
	}
	e.ledger.Replace(report.SetSpec, keep)
	e.mu.Lock()
	defer e.mu.Unlock()
	for key := range e.memo {
		if _, ok := s.desired[key]; !ok {
			delete(e.memo, key)
			e.memoGen++
		}
	}
	for key := range e.contests {
		if _, ok := s.desired[key]; !ok {
			delete(e.contests, key)
		}
	}
	for key, d := range s.desired {
		e.known[key] = s.clusters[key]
		e.gvks[d.gvk] = true
	}
}

func orNone(s *snapshot) string {
	if s == nil {
		return "no revision"
	}
	return "the last good revision " + s.revision
}

func (e *Engine) sourceTrouble(reason string, err error) error {
	e.warn(reason, err)
	return err
}

// warn logs source-level trouble and records it as a Warning Event on the status ConfigMap.
func (e *Engine) warn(reason string, err error) {
	e.deps.Log.Error(err, "Source trouble", "reason", reason)
	e.ledger.Warn(reason, err.Error())
}

// resolve turns a render into a snapshot: it defaults namespaces, tracks, hashes and stages each
// object and checks that its kind is served. An object that cannot be used (unknown kind, unserved
// version, duplicate, JSON that does not decode) is reported with its file and left out, and makes
// the render partial. An object whose kind a CRD of the same render defines waits for that CRD.
//
// It decodes one object at a time and keeps only the snapshot's compact form of each (and its
// links, to index clusters): the render's decoded objects are never all held at once.
func (e *Engine) resolve(commit, revision string, objs []render.EncodedObject, renderErrs []error, partial bool) *snapshot {
	s := &snapshot{
		commit: commit, revision: revision, renderErrs: renderErrs, renderPartial: partial,
		desired: make(map[diff.Key]*desiredObject, len(objs)), rendered: make(map[diff.Key]bool, len(objs)),
		gitClusters: map[string]bool{}, namespaces: map[string]bool{}, parts: map[string][]diff.Key{},
		partial: partial, errs: slices.Clone(renderErrs), view: &renderedView{},
	}
	// First each object whose kind is served, learning the kinds the render's CRDs define; then,
	// knowing them all, the objects of kinds not served (a CRD may come after its objects).
	// An object the snapshot in use holds as it is now is shared, not made again: a new commit
	// changes a few objects of a fleet, and its snapshot is built beside the one in use.
	var prev map[diff.Key]*desiredObject
	if cur := e.snap.Load(); cur != nil {
		prev = cur.desired
	}
	entries := make([]resolved, len(objs))
	defined := map[schema.GroupVersionKind]apiextensionsv1.ResourceScope{}
	var unserved []int
	for i, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			entries[i].err = err
			continue
		}
		crdKinds(obj.Unstructured, defined)
		if entries[i] = e.resolveOne(obj, nil, prev); entries[i].unserved {
			unserved = append(unserved, i)
		}
	}
	for _, i := range unserved {
		obj, err := objs[i].Decode()
		if err != nil {
			entries[i].err = err
			continue
		}
		entries[i] = e.resolveOne(obj, defined, prev)
	}
	links := make([]diff.Links, 0, len(objs))
	var order []diff.Key
	for _, r := range entries {
		if r.err != nil {
			s.errs = append(s.errs, r.err)
			s.partial = true
			continue
		}
		key := r.links.Key
		if prev, dup := s.desired[key]; dup {
			s.errs = append(s.errs, fmt.Errorf("%s: %s is also rendered from %s; keeping the first", r.desired.file, key, prev.file))
			s.partial = true
			continue
		}
		s.desired[key] = r.desired
		s.rendered[key] = true
		order = append(order, key)
		links = append(links, r.links)
		if r.pending {
			s.pending = append(s.pending, key)
		}
		if key.Group == "" && key.Kind == "Namespace" {
			s.namespaces[key.Name] = true
		}
	}
	s.clusters = diff.IndexLinks(links)
	for key := range s.desired {
		if key.Kind == "Cluster" && key.Group == "cluster.x-k8s.io" {
			s.gitClusters[key.Namespace+"/"+key.Name] = true
		}
	}
	if e.opts.Shard != nil {
		order = s.shard(order, e.opts.Shard)
	}
	// Stage order: what others refer to (or live in) first; within a stage, as rendered.
	slices.SortStableFunc(order, func(a, b diff.Key) int { return s.desired[a].stage - s.desired[b].stage })
	s.order = order
	pending := make(map[diff.Key]bool, len(s.pending))
	for _, key := range s.pending {
		pending[key] = true
	}
	seen := map[schema.GroupVersionKind]bool{}
	for _, key := range order {
		if gvk := s.desired[key].gvk; !pending[key] && !seen[gvk] {
			seen[gvk] = true
			s.kinds = append(s.kinds, gvk)
		}
	}
	for _, key := range order {
		if c := s.clusters[key]; c != "" && !(key.Kind == "Cluster" && key.Group == "cluster.x-k8s.io") {
			s.parts[key.Namespace+"/"+c] = append(s.parts[key.Namespace+"/"+c], key)
		}
	}
	if len(s.pending) > 0 {
		s.partial = true // until every kind is served, what is rendered is not fully known
		s.objects = objs
	}
	return s
}

// resolved is one rendered object as resolve made it: ready for the snapshot, or why it cannot be.
type resolved struct {
	desired *desiredObject
	links   diff.Links
	// pending: a CRD of the render defines its kind, not served yet.
	pending bool
	// unserved: its kind is not served; resolved again once the render's CRDs are known.
	unserved bool
	err      error
}

// resolveOne defaults o's namespace, tracks it and makes its compact form, or takes prev's when
// prev has it as it is. defined are the kinds the render's CRDs define; nil while they are not all
// known, and an object of a kind not served is then only marked unserved.
func (e *Engine) resolveOne(o render.Object, defined map[schema.GroupVersionKind]apiextensionsv1.ResourceScope, prev map[diff.Key]*desiredObject) resolved {
	obj := o.Unstructured
	gvk := obj.GroupVersionKind()
	var r resolved
	mapping, err := e.deps.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case err != nil && !meta.IsNoMatchError(err):
		return resolved{err: fmt.Errorf("%s: %s %s: %w", o.File, obj.GetKind(), obj.GetName(), err)}
	case err != nil && defined == nil:
		return resolved{unserved: true}
	case err != nil:
		scope, ok := defined[gvk]
		if !ok {
			return resolved{err: fmt.Errorf("%s: %s %s: unknown kind: no API or CRD serves %s %s", o.File, obj.GetKind(), obj.GetName(), obj.GetAPIVersion(), obj.GetKind())}
		}
		r.pending = true // created once its CRD is served
		if scope == apiextensionsv1.ClusterScoped {
			obj.SetNamespace("")
		} else if obj.GetNamespace() == "" {
			obj.SetNamespace("default")
		}
	case mapping.Scope.Name() == meta.RESTScopeNameNamespace && obj.GetNamespace() == "":
		obj.SetNamespace("default")
	case mapping.Scope.Name() == meta.RESTScopeNameRoot:
		obj.SetNamespace("")
	}
	diff.Track(obj, e.opts.Owner)
	r.links = diff.LinksOf(obj)
	js, err := obj.MarshalJSON()
	if err != nil {
		return resolved{err: fmt.Errorf("%s: %s: %w", o.File, r.links.Key, err)}
	}
	if p := prev[r.links.Key]; p != nil && p.file == o.File && bytes.Equal(p.raw, js) {
		r.desired = p // never changed once made
		return r
	}
	r.desired = newDesiredObject(obj, js, o.File)
	return r
}

// shard keeps the objects of the Clusters the shard selector matches, and those of no cluster.
func (s *snapshot) shard(order []diff.Key, sel labels.Selector) []diff.Key {
	selected := map[string]bool{} // namespace/name of selected Clusters
	for key, d := range s.desired {
		if key.Group == "cluster.x-k8s.io" && key.Kind == "Cluster" && sel.Matches(labels.Set(d.labels)) {
			selected[key.Namespace+"/"+key.Name] = true
		}
	}
	kept := order[:0]
	for _, key := range order {
		cluster := s.clusters[key]
		if cluster == "" || selected[key.Namespace+"/"+cluster] {
			kept = append(kept, key)
			continue
		}
		delete(s.desired, key)
	}
	return kept
}

// crdKinds adds the kinds o defines, with their scope, to out when o is a CustomResourceDefinition.
func crdKinds(o *unstructured.Unstructured, out map[schema.GroupVersionKind]apiextensionsv1.ResourceScope) {
	if o.GetKind() != "CustomResourceDefinition" || o.GroupVersionKind().Group != apiextensionsv1.GroupName {
		return
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, crd); err != nil {
		return
	}
	for _, v := range crd.Spec.Versions {
		if v.Served {
			out[schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}] = crd.Spec.Scope
		}
	}
}
