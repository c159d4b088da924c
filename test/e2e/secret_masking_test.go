package e2e

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/driftd/driftd/internal/testenv"
	"github.com/driftd/driftd/internal/testenv/driver"
	"github.com/driftd/driftd/internal/testenv/fleet"
)

func TestDriftedSecretIsReportedWithoutItsValues(t *testing.T) {
	const gitValue, liveValue = "git-s3cret-value", "leaked-live-value"
	ns := "secret-masking"
	repo := testenv.NewGitRepo(t, fleet.Prod(ns).Add("credentials.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: prod-credentials\nstringData:\n  password: "+gitValue+"\n").Files())
	args := drv.Args(t, repo.Dir, "secret-masking")
	drv.RunOnce(t, ns, args...)

	secret := &corev1.Secret{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "prod-credentials"}, secret); err != nil {
		t.Fatal(err)
	}
	secret.Data["password"] = []byte(liveValue)
	if err := env.Client.Update(context.Background(), secret, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}

	var seen []string
	code, doc, stderr := drv.Plan(t, args...)
	if code != 2 || len(doc.Findings) != 1 || doc.Findings[0].Object.Kind != "Secret" ||
		len(doc.Findings[0].Fields) != 1 || doc.Findings[0].Fields[0].Path != "/data/password" || doc.Findings[0].Fields[0].Manager != "kubectl-edit" {
		t.Fatalf("plan: exit %d, findings %+v; want the Secret's /data/password set by kubectl-edit", code, doc.Findings)
	}
	_, jsonOut, _ := drv.Exec(context.Background(), append([]string{"plan", "-o", "json"}, args...)...)
	_, tableOut, _ := drv.Exec(context.Background(), append([]string{"plan"}, args...)...)
	seen = append(seen, jsonOut, tableOut, stderr)

	// A daemon in detect mode announces it; one in correct mode corrects it. Neither may print it.
	d := drv.Start(t, ns, append(args, "--interval", "1h")...)
	testenv.Eventually(t, 20*time.Second, "the Secret corrected", func() bool {
		s := &corev1.Secret{}
		_ = env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "prod-credentials"}, s)
		return string(s.Data["password"]) == gitValue
	})
	testenv.Eventually(t, 10*time.Second, "the Secret's Events", func() bool {
		evs := drv.Events(t, ns, "Secret", "prod-credentials")
		return driver.HasEvent(evs, "DriftDetected") && driver.HasEvent(evs, "DriftCorrected")
	})
	seen = append(seen, d.Out.String())
	seen = append(seen, drv.Events(t, ns, "Secret", "prod-credentials")...)

	for _, v := range []string{gitValue, liveValue} {
		for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
			for _, text := range seen {
				if strings.Contains(text, form) {
					t.Errorf("a Secret value (%q) appears in driftd's output:\n%s", form, text)
				}
			}
		}
	}
	if !strings.Contains(tableOut, "/data/password") || !strings.Contains(tableOut, "******") {
		t.Errorf("the table names neither the field nor its masked value:\n%s", tableOut)
	}
}
