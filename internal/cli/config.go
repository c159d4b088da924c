package cli

import (
	"fmt"
	"os"
	"sort"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/driftd/driftd/internal/diff"
)

// fileConfig is the config file: every flag as a key (its value as a string, number, boolean or
// list), and the ignore and mask rules and the inventory endpoints, which have no flag.
type fileConfig struct {
	flags       map[string]any
	ignore      []diff.IgnoreRule
	mask        []diff.IgnoreRule
	inventories []inventoryConfig
}

// inventoryConfig is an inventory endpoint (api/inventory/v1) of an infrastructure provider
// driftd has no built-in reader for; --provider <provider> turns it on.
type inventoryConfig struct {
	// Provider is the scheme of the providerIDs its controller writes on Machines.
	Provider string `json:"provider"`
	// URL is the endpoint's base URL (https://, or http:// to loopback).
	URL string `json:"url"`
	// InfrastructureKinds are the kinds of infrastructure cluster (a Cluster's
	// spec.infrastructureRef) whose clusters it answers for.
	InfrastructureKinds []string `json:"infrastructureKinds"`
	// TokenFile holds the bearer token, read at every snapshot.
	TokenFile string `json:"tokenFile,omitempty"`
	// CAFile is a PEM bundle of the certificate authorities to trust instead of the system's.
	CAFile string `json:"caFile,omitempty"`
	// Timeout bounds one page's request (a Go duration, default 30s).
	Timeout string `json:"timeout,omitempty"`
	// MachineFields are the dotted paths, in the infrastructure machine, that an instance's type
	// and image are compared with (InstanceMismatch); unset compares nothing.
	MachineFields struct {
		Type  string `json:"type,omitempty"`
		Image string `json:"image,omitempty"`
	} `json:"machineFields,omitzero"`
}

// parseConfig reads a config file. Unknown keys are errors that name the file and the key;
// nothing is taken from a file that has one.
func parseConfig(path string, data []byte, fs *pflag.FlagSet) (*fileConfig, error) {
	raw := map[string]any{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	cfg := &fileConfig{flags: map[string]any{}}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		if k == "inventories" {
			js, _ := yaml.Marshal(v)
			if err := yaml.UnmarshalStrict(js, &cfg.inventories); err != nil {
				return nil, fmt.Errorf("config file %s: inventories: %w", path, err)
			}
			continue
		}
		if k == "ignore" || k == "mask" {
			rules := &cfg.ignore
			if k == "mask" {
				rules = &cfg.mask
			}
			js, _ := yaml.Marshal(v)
			if err := yaml.UnmarshalStrict(js, rules); err != nil {
				return nil, fmt.Errorf("config file %s: %s: %w", path, k, err)
			}
			continue
		}
		if k == "config" || fs.Lookup(k) == nil {
			return nil, fmt.Errorf("config file %s: unknown key %q (keys are the flags of the command, ignore, mask and inventories)", path, k)
		}
		cfg.flags[k] = v
	}
	return cfg, nil
}

// applyConfigFile reads --config (when set) and sets every flag the command line did not set.
// It returns the file's ignore and mask rules and inventory endpoints.
func applyConfigFile(fs *pflag.FlagSet, path string) (*fileConfig, error) {
	if path == "" {
		return &fileConfig{}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	cfg, err := parseConfig(path, data, fs)
	if err != nil {
		return nil, err
	}
	for name, v := range cfg.flags {
		if fs.Changed(name) {
			continue // the command line wins
		}
		var values []string
		if list, ok := v.([]any); ok {
			for _, item := range list {
				values = append(values, fmt.Sprint(item))
			}
		} else {
			values = []string{fmt.Sprint(v)}
		}
		for _, s := range values {
			if err := fs.Set(name, s); err != nil {
				return nil, fmt.Errorf("config file %s: %s: %w", path, name, err)
			}
		}
	}
	return cfg, nil
}
