package diff

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	kcp "sigs.k8s.io/cluster-api/controlplane/kubeadm/pkg"
)

// ControlPlane is what Cluster API's KubeadmControlPlane controller judges a control plane's
// Machines with: the Cluster, the Machines, and each Machine's KubeadmConfig and infrastructure
// machine (by Machine name).
type ControlPlane struct {
	Cluster        *clusterv1.Cluster
	Machines       []*clusterv1.Machine
	KubeadmConfigs map[string]*bootstrapv1.KubeadmConfig
	InfraMachines  map[string]*unstructured.Unstructured
	// Templates reads the infrastructure template the next KubeadmControlPlane names (as the
	// revision will have it: Git's objects first, then the live ones).
	Templates client.Client
}

// ControlPlaneRollout says what applying next over live (nil: it is created) does to the
// control plane's Machines cp holds, at now. Which Machines roll is Cluster API's own verdict on
// each (controlplane/kubeadm/pkg.UpToDate: version, kubeadm configuration — DNS, join discovery and
// an init-only change excluded as Cluster API excludes them —, infrastructure template,
// rollout.after and rollout.before with the Machines' certificate expiry); then replicas, and
// the fields Cluster API propagates in place.
func ControlPlaneRollout(ctx context.Context, live, next *controlplanev1.KubeadmControlPlane, cp ControlPlane, now time.Time) *Rollout {
	want := int(ptr.Deref(next.Spec.Replicas, 1))
	if live == nil {
		return &Rollout{Effect: EffectScale, Machines: want, ControlPlane: true,
			Reason: fmt.Sprintf("created: Cluster API creates %d control-plane Machines", want)}
	}
	at := metav1.NewTime(now)
	outdated := 0
	var reasons []string
	for _, m := range cp.Machines {
		if m.DeletionTimestamp != nil {
			continue // on its way out already (the end of an earlier rollout): not replaced by this one
		}
		upToDate, res, err := kcp.UpToDate(ctx, cp.Templates, cp.Cluster, m, next, &at, cp.InfraMachines, cp.KubeadmConfigs)
		if err != nil {
			return &Rollout{Effect: EffectUnknown, ControlPlane: true, Reason: fmt.Sprintf("Machine %s: %v", m.Name, err)}
		}
		if !upToDate {
			outdated++
			for _, r := range res.LogMessages {
				if r, _, _ = strings.Cut(r, ": diff: "); !slices.Contains(reasons, r) {
					reasons = append(reasons, r)
				}
			}
		}
	}
	had := int(ptr.Deref(live.Spec.Replicas, 1))
	if outdated > 0 {
		reason := fmt.Sprintf("Cluster API replaces %d of %d control-plane Machines, one at a time: %s (KubeadmControlPlane UpToDate)",
			outdated, len(cp.Machines), strings.Join(reasons, "; ")) + alsoScales(had, want)
		return &Rollout{Effect: EffectRoll, Machines: outdated, ControlPlane: true, Reason: reason}
	}
	if want != had {
		return scaled(had, want, "control-plane Machines", true)
	}
	if fields := controlPlaneInPlace(&live.Spec.MachineTemplate, &next.Spec.MachineTemplate); len(fields) > 0 {
		return &Rollout{Effect: EffectInPlace, Machines: len(cp.Machines), ControlPlane: true,
			Reason: "Cluster API propagates " + strings.Join(fields, ", ") + " to the existing control-plane Machines without replacing them"}
	}
	return &Rollout{Effect: EffectNone, ControlPlane: true,
		Reason: "no control-plane Machine is out of date by Cluster API's rule (KubeadmControlPlane UpToDate): the change is for Machines to come, or applied in the workload cluster (CoreDNS)"}
}

// controlPlaneInPlace lists the fields of a KubeadmControlPlane's machine template Cluster API
// propagates to the existing Machines without a rollout that differ between cur and des.
func controlPlaneInPlace(cur, des *controlplanev1.KubeadmControlPlaneMachineTemplate) []string {
	return changed(
		field{"machineTemplate.metadata.labels", cur.ObjectMeta.Labels, des.ObjectMeta.Labels},
		field{"machineTemplate.metadata.annotations", cur.ObjectMeta.Annotations, des.ObjectMeta.Annotations},
		field{"machineTemplate.spec.readinessGates", cur.Spec.ReadinessGates, des.Spec.ReadinessGates},
		field{"machineTemplate.spec.deletion", cur.Spec.Deletion, des.Spec.Deletion},
		field{"machineTemplate.spec.taints", cur.Spec.Taints, des.Spec.Taints},
	)
}
