package cli

import (
	"strings"
	"testing"

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
