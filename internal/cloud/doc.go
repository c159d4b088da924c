// Package cloud is driftd's cloud reconciler: it compares the Machines and MachinePools of the
// rendered clusters with the real cloud inventory (AWS, vSphere, any provider's inventory
// endpoint) and asks for the replacement of drifted Machines the Cluster API way.
//
// A cycle has three steps, as Cluster API's KubeadmControlPlane builds its scope once and its
// MachineHealthCheck gathers its targets before judging them:
//
//  1. scope (scope.go) — every request: the rendered Clusters' live infrastructure clusters and the
//     identity each is read with (identity.go, vsphere.go), the Machines, MachineHealthChecks,
//     MachinePools and group sizes — the Machines before the cloud, so a Machine that gets its
//     providerID while a slow snapshot is read is not judged — then one snapshot per provider;
//  2. plan — pure decisions in internal/diff: findings (diff.CloudFindings), the vanished-location
//     check (diff.Vanished), the breaker, budgets and pool restores (diff.PlanReplacements): a
//     plan, by value;
//  3. act (act.go) — the plan's replacements and pool restores, and each outcome announced once
//     through the shared report.Ledger.
//
// The reconciler reads the rest of driftd only through Fleet (the rendered state and a reader of
// live objects), which internal/engine provides; it does not import the engine, and the engine
// does not import it. It owns one piece of memory between cycles: what each location held at the
// last look, for diff.Vanished.
package cloud
