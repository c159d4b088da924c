package infra

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	awsInstanceID = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	uuidRE        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// ParseAWSProviderID returns the instance ID of a CAPA providerID: aws:///<zone>/<instance-id>, or
// aws:////<instance-id> as CAPA also writes it. The last segment is the ID.
func ParseAWSProviderID(pid string) (string, error) {
	rest, ok := strings.CutPrefix(pid, "aws://")
	if !ok {
		return "", fmt.Errorf("providerID %q is not aws://", pid)
	}
	id := rest[strings.LastIndex(rest, "/")+1:]
	if !awsInstanceID.MatchString(id) {
		return "", fmt.Errorf("providerID %q does not end in an EC2 instance ID", pid)
	}
	return id, nil
}

// AWSProviderID is the providerID CAPA writes for an instance in zone.
func AWSProviderID(zone, id string) string { return "aws:///" + zone + "/" + id }

// ParseVSphereProviderID returns the BIOS UUID of a CAPV providerID, vsphere://<bios-uuid>,
// lower-cased.
func ParseVSphereProviderID(pid string) (string, error) {
	rest, ok := strings.CutPrefix(pid, "vsphere://")
	if !ok {
		return "", fmt.Errorf("providerID %q is not vsphere://", pid)
	}
	if !uuidRE.MatchString(rest) {
		return "", fmt.Errorf("providerID %q does not hold a BIOS UUID", pid)
	}
	return strings.ToLower(rest), nil
}

// VSphereProviderID is the providerID CAPV writes for a VM's BIOS UUID.
func VSphereProviderID(uuid string) string { return "vsphere://" + strings.ToLower(uuid) }

// InstanceKey returns the provider and ID a providerID names, the key instances are matched on:
// the EC2 instance ID of aws://, the BIOS UUID of vsphere://, and for any other scheme (an
// inventory endpoint's provider) the scheme and everything after "://".
func InstanceKey(pid string) (provider, id string, err error) {
	switch {
	case strings.HasPrefix(pid, "aws://"):
		id, err = ParseAWSProviderID(pid)
		return ProviderAWS, id, err
	case strings.HasPrefix(pid, "vsphere://"):
		id, err = ParseVSphereProviderID(pid)
		return ProviderVSphere, id, err
	}
	scheme, rest, ok := strings.Cut(pid, "://")
	if !ok || !ValidProviderName(scheme) || rest == "" {
		return "", "", fmt.Errorf("providerID %q is not <scheme>://<id>", pid)
	}
	return scheme, rest, nil
}

var providerName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ValidProviderName reports whether name can name a provider: a providerID scheme of lower-case
// letters, digits and dashes.
func ValidProviderName(name string) bool { return providerName.MatchString(name) }
