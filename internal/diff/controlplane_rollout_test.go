package diff

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/controlplane/kubeadm/pkg/desiredstate"
)

// controlPlaneOf is a KubeadmControlPlane of three Machines as Cluster API made them from it:
// each with the KubeadmConfig Cluster API computes for a joining Machine, created at created.
// (No infrastructure machines: Cluster API then judges by version and kubeadm configuration.)
func controlPlaneOf(t *testing.T, kcp *controlplanev1.KubeadmControlPlane, created time.Time) ControlPlane {
	t.Helper()
	cluster := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: "fleet"}}
	cp := ControlPlane{Cluster: cluster, KubeadmConfigs: map[string]*bootstrapv1.KubeadmConfig{}, InfraMachines: map[string]*unstructured.Unstructured{}}
	for _, name := range []string{"prod-cp-a", "prod-cp-b", "prod-cp-c"} {
		kc, err := desiredstate.ComputeDesiredKubeadmConfig(kcp, cluster, true, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		cp.KubeadmConfigs[name] = kc
		cp.Machines = append(cp.Machines, &clusterv1.Machine{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "fleet", CreationTimestamp: metav1.NewTime(created)},
			Spec: clusterv1.MachineSpec{ClusterName: "prod", Version: kcp.Spec.Version,
				Bootstrap: clusterv1.Bootstrap{ConfigRef: clusterv1.ContractVersionedObjectReference{APIGroup: bootstrapv1.GroupVersion.Group, Kind: "KubeadmConfig", Name: name}}},
		})
	}
	return cp
}

func TestControlPlaneRollout(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	live := &controlplanev1.KubeadmControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "prod-cp", Namespace: "fleet"},
		Spec: controlplanev1.KubeadmControlPlaneSpec{Replicas: ptr.To[int32](3), Version: "v1.35.0",
			KubeadmConfigSpec: bootstrapv1.KubeadmConfigSpec{ClusterConfiguration: bootstrapv1.ClusterConfiguration{
				APIServer: bootstrapv1.APIServer{CertSANs: []string{"localhost"}}}}},
	}
	for _, tt := range []struct {
		name   string
		edit   func(*controlplanev1.KubeadmControlPlane)
		effect Effect
		count  int
		reason string
	}{
		{"version", func(k *controlplanev1.KubeadmControlPlane) { k.Spec.Version = "v1.35.1" }, EffectRoll, 3, `Machine version "v1.35.0" is not equal to KCP version "v1.35.1"`},
		{"kubeadm configuration", func(k *controlplanev1.KubeadmControlPlane) {
			k.Spec.KubeadmConfigSpec.ClusterConfiguration.APIServer.CertSANs = []string{"localhost", "api.example.com"}
		}, EffectRoll, 3, "KubeadmConfig is outdated"},
		{"an init-only change", func(k *controlplanev1.KubeadmControlPlane) {
			k.Spec.KubeadmConfigSpec.InitConfiguration.SkipPhases = []string{"addon/kube-proxy"}
		}, EffectNone, 0, "no control-plane Machine is out of date"},
		{"DNS", func(k *controlplanev1.KubeadmControlPlane) {
			k.Spec.KubeadmConfigSpec.ClusterConfiguration.DNS.ImageTag = "v1.12.0"
		}, EffectNone, 0, "CoreDNS"},
		{"replicas", func(k *controlplanev1.KubeadmControlPlane) { k.Spec.Replicas = ptr.To[int32](5) }, EffectScale, 2, "creates 2"},
		{"a label of the Machines", func(k *controlplanev1.KubeadmControlPlane) {
			k.Spec.MachineTemplate.ObjectMeta.Labels = map[string]string{"team": "platform"}
		}, EffectInPlace, 3, "machineTemplate.metadata.labels"},
		{"rollout.after passed", func(k *controlplanev1.KubeadmControlPlane) {
			k.Spec.Rollout.After = metav1.NewTime(now.Add(-time.Minute))
		}, EffectRoll, 3, "rolloutAfter expired"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := live.DeepCopy()
			tt.edit(next)
			r := ControlPlaneRollout(context.Background(), live, next, controlPlaneOf(t, live, now.Add(-time.Hour)), now)
			if r.Effect != tt.effect || r.Machines != tt.count || !r.ControlPlane || !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("rollout = %+v, want %s of %d control-plane Machines with a reason saying %q", r, tt.effect, tt.count, tt.reason)
			}
		})
	}
	t.Run("a Machine on its way out from an earlier rollout is not replaced again", func(t *testing.T) {
		next := live.DeepCopy()
		next.Spec.Version = "v1.35.1"
		cp := controlPlaneOf(t, live, now.Add(-time.Hour))
		cp.Machines[0].DeletionTimestamp = &metav1.Time{Time: now}
		if r := ControlPlaneRollout(context.Background(), live, next, cp, now); r.Effect != EffectRoll || r.Machines != 2 {
			t.Errorf("rollout = %+v, want a roll of the 2 Machines not being deleted", r)
		}
	})
}
