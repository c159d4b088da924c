// Package endpoint reads the inventory of any infrastructure provider through an inventory
// endpoint: a small HTTPS+JSON service that a provider team runs in front of its own cloud and that
// answers driftd's inventory protocol (api/inventory/v1, docs/inventory.md).
//
// The provider is named by the scheme of the providerIDs its controller writes on Machines
// ("in-memory" for in-memory://…); Machines are matched on those. The answer is doubted the way an
// AWS or vSphere answer is: an error, a page missing, an answer that does not say it is complete,
// or an instance the provider cannot name makes the clusters concerned unavailable — never their
// instances missing — and the rest of the fleet is judged as usual.
package endpoint
