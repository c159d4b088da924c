// Package infra is the cloud inventory's vocabulary: the instances and node pools a provider
// reports for the clusters in scope, and whether that answer is complete.
//
// The providers live in infra/aws (EC2 and Auto Scaling) and infra/vsphere (govmomi); each
// satisfies cloud.Inventory (the wiring in internal/cli checks it). This package holds only data
// and the providerID parsers; it calls no cloud and decides nothing: a partial answer says so
// (Complete false) and the cloud reconciler never turns it into InstanceMissing.
package infra
