package deploy

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
)

// served are the metric names driftd serves of its own, with the series names a histogram adds.
func served() map[string]bool {
	out := map[string]bool{}
	for _, n := range report.Names() {
		out[n] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			out[n+suffix] = true
		}
	}
	return out
}

// metricsOf parses expr with Prometheus' own PromQL parser and returns the metric names it selects.
func metricsOf(t *testing.T, where, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// TestAlertRulesAndDashboardUseOnlyServedMetrics: the PrometheusRule of the prometheus component
// passes Prometheus' own rule validation, and every expression in it and in the Grafana dashboard
// parses and selects only metrics driftd serves.
func TestAlertRulesAndDashboardUseOnlyServedMetrics(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	have := served()
	used := map[string]bool{}
	check := func(where, expr string) {
		for _, m := range metricsOf(t, where, expr) {
			used[m] = true
			if !have[m] {
				t.Errorf("%s selects %s, which driftd does not serve", where, m)
			}
		}
	}

	raw, err := os.ReadFile(filepath.Join(root, "config/components/prometheus/rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	groupsYAML, err := yaml.JSONToYAML(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(groupsYAML, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("rules.yaml: %v", err)
	}
	if groups == nil || len(groups.Groups) == 0 || len(groups.Groups[0].Rules) < 5 {
		t.Fatalf("rules.yaml: no alert rules")
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			check("alert "+r.Alert, r.Expr)
		}
	}

	raw, err = os.ReadFile(filepath.Join(root, "config/components/grafana/driftd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			// Grafana's variables: a selector of every value is what a dashboard asks by default.
			check("dashboard panel "+p.Title, strings.ReplaceAll(target.Expr, "$owner", ".*"))
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok && strings.HasPrefix(q, "label_values(") {
			metric, _, _ := strings.Cut(strings.TrimPrefix(q, "label_values("), ",")
			check("dashboard variable "+v.Name, metric)
		}
	}
	// The dashboard shows what the issue of shipping it asked: drift by cluster and class,
	// corrections, cycle latency and staleness, cloud calls.
	for _, m := range []string{"driftd_drifted_objects", "driftd_corrections_total", "driftd_cycle_duration_seconds_bucket",
		"driftd_last_successful_cycle_timestamp_seconds", "driftd_cloud_api_calls_total", "driftd_cloud_api_errors_total"} {
		if !used[m] {
			t.Errorf("neither the rules nor the dashboard use %s", m)
		}
	}
	var names []string
	for m := range used {
		names = append(names, m)
	}
	sort.Strings(names)
	if !slices.Contains(names, "driftd_last_cycle_timestamp_seconds") {
		t.Errorf("no alert on a driftd that runs no cycle at all: %v", names)
	}
}
