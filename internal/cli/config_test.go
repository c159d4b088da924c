package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/diff"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func testFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o := &runOptions{}
	o.bind(fs)
	fs.DurationVar(&o.interval, "interval", 0, "")
	return fs
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, yaml, err string
		rules           int
	}{
		{name: "flags and rules", yaml: "repo: https://example.com/fleet.git\nmode: detect\nignore:\n- paths: [/spec/replicas]\n  target: {kind: MachineDeployment}\n", rules: 1},
		{name: "unknown key", yaml: "repo: x\nintervall: 5m\n", err: `unknown key "intervall"`},
		{name: "config inside config", yaml: "config: other.yaml\n", err: `unknown key "config"`},
		{name: "unknown rule field", yaml: "ignore:\n- paths: [/a]\n  targett: {}\n", err: "ignore:"},
		{name: "not a map", yaml: "- a\n- b\n", err: "driftd.yaml"},
		{name: "inventory endpoints", yaml: "provider: [in-house]\ninventories:\n- provider: in-house\n  url: https://inventory.example\n  infrastructureKinds: [InHouseCluster]\n"},
		{name: "unknown inventory field", yaml: "inventories:\n- provider: in-house\n  urll: https://inventory.example\n", err: "inventories:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig("driftd.yaml", []byte(tt.yaml), testFlags())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "driftd.yaml") {
					t.Fatalf("parseConfig = %v, want an error naming the file and %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.ignore) != tt.rules {
				t.Errorf("rules = %+v, want %d", cfg.ignore, tt.rules)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("repo: x\nmode: detect\ninterval: 5m\n"))
	f.Add([]byte("ignore:\n- paths: [/spec/replicas]\n  target: {name: '('}\n"))
	f.Add([]byte("{{{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := testFlags()
		cfg, err := parseConfig("fuzz.yaml", data, fs)
		if err != nil {
			return
		}
		for name := range cfg.flags {
			if fs.Lookup(name) == nil {
				t.Errorf("accepted unknown key %q", name)
			}
		}
	})
}

func TestInventoryEndpointsConfig(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	endpoint := func(extra string) string {
		return "inventories:\n- provider: in-house\n  url: https://inventory.example\n  infrastructureKinds: [InHouseCluster]\n" + extra
	}
	tests := []struct {
		name, yaml, err string
	}{
		{name: "turned on", yaml: "provider: [in-house]\n" + endpoint("  timeout: 10s\n  machineFields: {type: spec.flavor, image: spec.image.id}\n")},
		{name: "listed, not turned on", yaml: endpoint("")},
		{name: "--provider names no endpoint", yaml: "provider: [in-housе]\n" + endpoint(""), err: `--provider "in-housе"`},
		{name: "plain http elsewhere", yaml: "inventories:\n- provider: in-house\n  url: http://inventory.example\n  infrastructureKinds: [X]\n", err: "inventories[0] (in-house): inventory in-house: url http://inventory.example is plain http"},
		{name: "no kinds", yaml: "inventories:\n- provider: in-house\n  url: https://inventory.example\n", err: "infrastructureKinds is empty"},
		{name: "a built-in kind", yaml: "inventories:\n- provider: in-house\n  url: https://inventory.example\n  infrastructureKinds: [AWSCluster]\n", err: "AWSCluster clusters are read by --provider aws"},
		{name: "twice", yaml: endpoint("") + "- provider: in-house\n  url: https://other.example\n  infrastructureKinds: [Y]\n", err: "inventories[1] (in-house): provider listed twice"},
		{name: "a kind claimed twice", yaml: endpoint("") + "- provider: other\n  url: https://other.example\n  infrastructureKinds: [InHouseCluster]\n", err: "kind InHouseCluster is already answered for by in-house"},
		{name: "bad timeout", yaml: endpoint("  timeout: soon\n"), err: `timeout "soon"`},
		{name: "bad path", yaml: endpoint("  machineFields: {type: spec..flavor}\n"), err: `machineFields path "spec..flavor"`},
		{name: "a CA file with no certificate", yaml: endpoint("  caFile: " + ca + "\n"), err: "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "driftd.yaml")
			if err := os.WriteFile(file, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			o := &runOptions{}
			cmd := &cobra.Command{}
			o.bind(cmd.Flags())
			if err := cmd.Flags().Parse([]string{"--repo", t.TempDir(), "--config", file}); err != nil {
				t.Fatal(err)
			}
			err := o.complete(cmd)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("complete = %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := o.cloud.reconcilerOptions(diff.Policy{}, 0)
			on := strings.Contains(tt.yaml, "provider: [in-house]")
			if got := len(c.Inventories) == 1 && c.Inventories[0].Provider() == "in-house"; got != on {
				t.Errorf("inventories %v; want the endpoint only when --provider names it", c.Inventories)
			}
			if got := c.InfrastructureKinds["InHouseCluster"] == "in-house"; got != on {
				t.Errorf("kinds %v", c.InfrastructureKinds)
			}
			if on && strings.Contains(tt.yaml, "machineFields") && strings.Join(c.MachineFields["in-house"].Image, ".") != "spec.image.id" {
				t.Errorf("machine fields %+v", c.MachineFields)
			}
		})
	}
}
