package infra

import (
	"strings"
	"testing"
)

func TestInstanceKey(t *testing.T) {
	tests := []struct {
		pid, provider, id, err string
	}{
		{"aws:///eu-west-1a/i-0123456789abcdef0", ProviderAWS, "i-0123456789abcdef0", ""},
		{"aws:////i-0123456789abcdef0", ProviderAWS, "i-0123456789abcdef0", ""},
		{"aws:///i-12345678", ProviderAWS, "i-12345678", ""},
		{"vsphere://4206A1F2-5A3B-4C5D-8E9F-0123456789AB", ProviderVSphere, "4206a1f2-5a3b-4c5d-8e9f-0123456789ab", ""},
		{"aws:///eu-west-1a/", "", "", "does not end in an EC2 instance ID"},
		{"aws:///eu-west-1a/vol-123", "", "", "does not end in an EC2 instance ID"},
		{"vsphere://not-a-uuid", "", "", "does not hold a BIOS UUID"},
		{"in-memory://dev1-md-x7k2p", "in-memory", "dev1-md-x7k2p", ""},
		{"openstack:///9a1c8e3e-77f5-4d6b", "openstack", "/9a1c8e3e-77f5-4d6b", ""},
		{"in-memory://", "", "", "is not <scheme>://<id>"},
		{"In-Memory://x", "", "", "is not <scheme>://<id>"},
		{"dev1-md-x7k2p", "", "", "is not <scheme>://<id>"},
		{"", "", "", "is not <scheme>://<id>"},
	}
	for _, tt := range tests {
		provider, id, err := InstanceKey(tt.pid)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("InstanceKey(%q) = %v, want an error with %q", tt.pid, err, tt.err)
			}
			continue
		}
		if err != nil || provider != tt.provider || id != tt.id {
			t.Errorf("InstanceKey(%q) = %q, %q, %v; want %q, %q", tt.pid, provider, id, err, tt.provider, tt.id)
		}
	}
}

func FuzzInstanceKey(f *testing.F) {
	for _, s := range []string{"aws:///eu-west-1a/i-0123456789abcdef0", "aws:////i-12345678", "vsphere://4206a1f2-5a3b-4c5d-8e9f-0123456789ab", "aws://", "vsphere://", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pid string) {
		provider, id, err := InstanceKey(pid)
		if err != nil {
			return
		}
		// What parses round-trips through the form CAPI writes.
		var again string
		switch provider {
		case ProviderAWS:
			again = AWSProviderID("zone", id)
		case ProviderVSphere:
			again = VSphereProviderID(id)
		default:
			if !ValidProviderName(provider) || id == "" {
				t.Fatalf("provider %q, id %q", provider, id)
			}
			again = provider + "://" + id
		}
		if p2, id2, err := InstanceKey(again); err != nil || p2 != provider || id2 != id {
			t.Errorf("%q parsed to %s/%s, which does not round-trip: %s/%s %v", pid, provider, id, p2, id2, err)
		}
	})
}
