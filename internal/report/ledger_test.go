package report

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/events"

	"github.com/driftd/driftd/internal/diff"
)

// recorded drains what the fake recorder got, as "Type Reason note".
func recorded(r *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func newTestLedger() (*Ledger, *events.FakeRecorder, *Metrics) {
	rec := events.NewFakeRecorder(100)
	m := NewMetrics(prometheus.NewRegistry(), "test")
	return NewLedger(NewEvents(rec), m, nil), rec, m
}

func md(name string) (*unstructured.Unstructured, diff.Key, diff.Finding) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("cluster.x-k8s.io/v1beta2")
	u.SetKind("MachineDeployment")
	u.SetNamespace("fleet")
	u.SetName(name)
	f := diff.Finding{Layer: diff.LayerSpec, Class: diff.ClassModified, Cluster: "prod", Object: diff.RefOf(u), Action: diff.ActionApply,
		Fields: []diff.Field{{Path: "/spec/replicas", Desired: int64(3), Live: int64(5), Manager: "kubectl-edit"}}}
	return u, diff.KeyOf(u), f
}

func corrections(m *Metrics, result string) float64 {
	var out dto.Metric
	if err := m.Corrections.WithLabelValues(result).Write(&out); err != nil {
		panic(err)
	}
	return out.GetCounter().GetValue()
}

// The same drift is announced once however many cycles see it; another drift of the same object,
// or the same one after it ended, is a new occurrence.
func TestDriftIsAnnouncedOncePerOccurrence(t *testing.T) {
	l, rec, _ := newTestLedger()
	obj, key, f := md("prod-md-0")
	entry := Entry{Set: SetSpec, Key: key}
	if !l.Drift(obj, entry, f) || l.Drift(obj, entry, f) || l.Drift(obj, entry, f) {
		t.Error("the first sighting must announce and the next two not")
	}
	if got := recorded(rec); len(got) != 1 || !strings.Contains(got[0], "DriftDetected") || !strings.Contains(got[0], "live 5") {
		t.Errorf("Events %q, want one DriftDetected", got)
	}
	other := f
	other.Fields = []diff.Field{{Path: "/spec/replicas", Desired: int64(3), Live: int64(7)}}
	if !l.Drift(obj, entry, other) {
		t.Error("another drift of the same object was not announced")
	}
	l.Clear(entry)
	if l.Current(entry) != nil || len(l.Remaining()) != 0 {
		t.Errorf("a cleared entry remains: %+v", l.Remaining())
	}
	if !l.Drift(obj, entry, other) {
		t.Error("a drift that ended and came back was not announced")
	}
	ignored := f
	ignored.Action = diff.ActionIgnored
	_, key2, _ := md("ignored")
	if l.Drift(obj, Entry{Set: SetSpec, Key: key2}, ignored) {
		t.Error("an ignored finding was announced")
	}
	if l.Current(Entry{Set: SetSpec, Key: key2}) == nil {
		t.Error("an ignored finding must still be kept")
	}
}

// Each outcome is one Event and its metric, together: a failure once per distinct error, a held
// correction once per contest episode.
func TestOutcomesAreEventsAndMetricsTogether(t *testing.T) {
	l, rec, m := newTestLedger()
	obj, key, f := md("prod-md-0")
	entry := Entry{Set: SetSpec, Key: key}
	boom := errors.New("the server is busy")
	if !l.Failed(obj, entry, f, boom, "") || l.Failed(obj, entry, f, boom, "") {
		t.Error("a failure must be announced once while it repeats")
	}
	if !l.Failed(obj, entry, f, errors.New("another error"), "") {
		t.Error("a different failure was not announced")
	}
	if got := corrections(m, "failed"); got != 2 {
		t.Errorf("failed corrections %v, want 2", got)
	}
	if !l.Held(obj, entry, f, 1) || l.Held(obj, entry, f, 1) || !l.Held(obj, entry, f, 2) {
		t.Error("a held correction must be announced once per episode")
	}
	l.Blocked(obj, f)
	if got := corrections(m, "blocked"); got != 3 {
		t.Errorf("blocked corrections %v, want 3 (two episodes and a blocked)", got)
	}
	l.Corrected(obj, entry, f)
	if got := corrections(m, "succeeded"); got != 1 || l.Current(entry) != nil {
		t.Errorf("succeeded %v, current %+v; a correction ends the drift", got, l.Current(entry))
	}
	reasons := map[string]int{}
	for _, e := range recorded(rec) {
		reasons[strings.Fields(e)[1]]++
	}
	if reasons["CorrectionFailed"] != 2 || reasons["CorrectionBlocked"] != 3 || reasons["DriftCorrected"] != 1 {
		t.Errorf("Events by reason %v", reasons)
	}
}

// Each set replaces only its own entries; a settled entry leaves what remains but keeps what was
// announced of it (a replacement asked for is not announced again while the cloud still shows it).
func TestSetsAreReplacedOnlyByTheirOwner(t *testing.T) {
	l, rec, _ := newTestLedger()
	a, ka, fa := md("a")
	b, kb, fb := md("b")
	l.Drift(a, Entry{Set: SetSpec, Key: ka}, fa)
	l.Drift(b, Entry{Set: SetOrphans, Key: kb}, fb)
	l.Drift(b, Entry{Set: SetCloud, Key: kb}, fb)
	l.Replace(SetOrphans, nil)
	if got := l.Keys(SetSpec); len(got) != 1 || got[0] != ka {
		t.Errorf("spec keys %v after the orphans were replaced", got)
	}
	if len(l.Keys(SetOrphans)) != 0 || len(l.Keys(SetCloud)) != 1 || len(l.Remaining()) != 2 {
		t.Errorf("orphans %v, cloud %v, remaining %d", l.Keys(SetOrphans), l.Keys(SetCloud), len(l.Remaining()))
	}
	cloud := Entry{Set: SetCloud, Key: kb}
	l.Settle(cloud)
	if l.Current(cloud) != nil {
		t.Error("a settled entry still remains")
	}
	recorded(rec)
	if l.Drift(b, cloud, fb) {
		t.Error("a settled drift seen again was announced again")
	}
	l.SettleAll(SetSpec)
	if len(l.Keys(SetSpec)) != 0 || l.Drift(a, Entry{Set: SetSpec, Key: ka}, fa) {
		t.Error("SettleAll must drop what remains and keep what was announced")
	}
}

// A fleet-level warning is announced once per value of its topic, again after it was withdrawn.
func TestTopicsAreAnnouncedOncePerValue(t *testing.T) {
	l, rec, _ := newTestLedger()
	obj, _, _ := md("a")
	if !l.Announce(obj, "suspect/fleet/prod", "x", ReasonInventorySuspect, "x") || l.Announce(obj, "suspect/fleet/prod", "x", ReasonInventorySuspect, "x") {
		t.Error("a topic must be announced once per value")
	}
	if !l.Announce(obj, "suspect/fleet/prod", "y", ReasonInventorySuspect, "y") {
		t.Error("a new value was not announced")
	}
	if got := l.Topics("suspect/"); len(got) != 1 || got[0] != "suspect/fleet/prod" {
		t.Errorf("topics %v", got)
	}
	l.Withdraw("suspect/fleet/prod")
	if len(l.Topics("suspect/")) != 0 || !l.Announce(obj, "suspect/fleet/prod", "y", ReasonInventorySuspect, "y") {
		t.Error("a withdrawn topic that comes back must be announced")
	}
	if got := recorded(rec); len(got) != 3 {
		t.Errorf("Events %q, want 3", got)
	}
}
