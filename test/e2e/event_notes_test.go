package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/report"
	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

// TestANoteOfMultiByteCharactersIsRecorded: the API server measures an Event's note in bytes and
// refuses one over 1 KiB; a note cut inside a character would come out longer once decoded and be
// refused, and the drift would go unannounced. A note of two-byte characters, cut where a byte
// count would split one, is recorded — directly, and as driftd's own DriftDetected for a ConfigMap
// whose values are all multi-byte.
func TestANoteOfMultiByteCharactersIsRecorded(t *testing.T) {
	ctx := context.Background()
	ns := "multibyte"
	drv.Namespace(t, ns)
	obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "target"}}
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	events := report.NewEvents(report.NewSyncRecorder(env.Client, env.Client.Scheme()))
	note := "ab" + strings.Repeat("é", 1000) // byte 1021 falls inside a character
	events.Warning(obj, "NoteTest", note)
	recorded := drv.Events(t, ns, "ConfigMap", "target")
	if len(recorded) != 1 {
		t.Fatalf("Events %v, want the one recorded", recorded)
	}
	if got := strings.TrimPrefix(recorded[0], "NoteTest: "); !utf8.ValidString(got) || len(got) > 1024 || !strings.HasPrefix(got, "abéé") {
		t.Errorf("note of %d bytes, valid %v", len(got), utf8.ValidString(got))
	}

	// Through driftd: every value of a ConfigMap in Git changed by someone else.
	var data strings.Builder
	for i := range 20 {
		data.WriteString("  k" + string(rune('a'+i)) + ": " + strings.Repeat("ü", 70) + "\n")
	}
	repo := testenv.NewGitRepo(t, fleet.New(ns).Add("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: words\ndata:\n"+data.String()).Files())
	args := drv.Args(t, repo.Dir, ns)
	drv.RunOnce(t, ns, args...)
	live := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "words"}, live); err != nil {
		t.Fatal(err)
	}
	for k := range live.Data {
		live.Data[k] = strings.Repeat("ö", 70)
	}
	if err := env.Client.Update(ctx, live, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	drv.RunOnce(t, ns, args...)
	testenv.Eventually(t, 10*time.Second, "DriftDetected on the ConfigMap", func() bool {
		return driver.HasEvent(drv.Events(t, ns, "ConfigMap", "words"), "DriftDetected")
	})
}
