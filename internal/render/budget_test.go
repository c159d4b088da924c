package render

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/driftd/driftd/internal/testenv/fixture"
)

// TestRenderRefusesAYAMLAliasBomb: kustomize expands every alias of what it reads; a file whose
// aliases expand beyond the budget is refused with its name before kustomize sees it, without the
// memory the expansion would take, and the rest of the fleet is rendered.
func TestRenderRefusesAYAMLAliasBomb(t *testing.T) {
	bomb := fixture.AliasBomb()
	if len(bomb) >= 1024 {
		t.Fatalf("the bomb is %d bytes, want under 1 KiB", len(bomb))
	}
	for _, tt := range []struct{ name, kustomization string }{
		{"resource file", "resources: [good.yaml, bomb.yaml]\n"},
		{"inline patch", "resources: [good.yaml]\npatches:\n- patch: |\n" + indent(strings.Replace(bomb, "kind: ConfigMap", "kind: ConfigMap", 1), "    ")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := fixture.WriteTree(t, map[string]string{
				"kustomization.yaml": tt.kustomization,
				"good.yaml":          md("good", 1),
				"bomb.yaml":          bomb,
			})
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			res, err := Render(root, "", Options{})
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("the render allocated %d MiB", grew>>20)
			}
			var msg string
			if err != nil {
				msg = err.Error()
			} else {
				msg = errors.Join(res.Errors...).Error()
				if got := names(res.Objects); len(got) != 1 || !strings.Contains(got[0], "good") {
					t.Errorf("objects %v, want the good MachineDeployment", got)
				}
			}
			if !strings.Contains(msg, "aliases expand to more than 100000 nodes") {
				t.Errorf("error %q does not say what was refused", msg)
			}
			if tt.name == "resource file" && !strings.Contains(msg, "bomb.yaml") {
				t.Errorf("error %q does not name the file", msg)
			}
		})
	}
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+prefix) + "\n"
}

// TestRenderKeepsAnchorsWithinBudget: a fleet that shares a block through an anchor renders.
func TestRenderKeepsAnchorsWithinBudget(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{
		"kustomization.yaml": "resources: [cm.yaml]\n",
		"cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  labels: &l {team: a}\n  annotations: *l\n",
	})
	res, err := Render(root, "", Options{})
	if err != nil || res.Partial {
		t.Fatalf("Render: %v, %v", err, res.Errors)
	}
	if got := res.Objects[0].GetAnnotations()["team"]; got != "a" {
		t.Errorf("alias not expanded: annotations %v", res.Objects[0].GetAnnotations())
	}
}

// TestRenderNeverReadsTheGitFolder: the checkout's .git holds the repository's remote, with its
// credentials. A symlink into it is refused like one out of the repository, and nothing of it
// reaches an object.
func TestRenderNeverReadsTheGitFolder(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{
		"fleet/kustomization.yaml": "resources: [md.yaml]\nconfigMapGenerator:\n- name: leak\n  files: [gitcfg]\n- name: leak2\n  files: [head]\n",
		"fleet/md.yaml":            md("good", 1),
		".git/config":              "[remote \"origin\"]\n\turl = https://user:s3cr3t-token@git.example.com/fleet.git\n",
		".git/HEAD":                "ref: refs/heads/main\n",
	})
	if err := os.Symlink("../.git/config", filepath.Join(root, "fleet", "gitcfg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../.git/HEAD", filepath.Join(root, "fleet", "head")); err != nil {
		t.Fatal(err)
	}
	res, err := Render(root, "fleet", Options{})
	var msg string
	if err != nil {
		msg = err.Error()
	} else {
		msg = errors.Join(res.Errors...).Error()
		for _, o := range res.Objects {
			js, _ := o.MarshalJSON()
			if strings.Contains(string(js), "s3cr3t-token") || strings.Contains(string(js), "refs/heads") {
				t.Errorf("%s %s holds the .git folder's content: %s", o.GetKind(), o.GetName(), js)
			}
		}
	}
	if !strings.Contains(msg, "fleet/gitcfg: symlink points into the repository's .git folder") {
		t.Errorf("errors %q do not name the refused link", msg)
	}
	if strings.Contains(msg, "s3cr3t-token") {
		t.Errorf("an error shows the .git folder's content: %s", msg)
	}

	t.Run("a .git folder is not part of a folder without a kustomization", func(t *testing.T) {
		root := fixture.WriteTree(t, map[string]string{
			"fleet/md.yaml":      md("good", 1),
			"fleet/.git/x.yaml":  md("hidden", 1),
			"fleet/sub/.git.yml": md("dotted", 1),
		})
		res, err := Render(root, "fleet", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := names(res.Objects); len(got) != 2 || strings.Contains(strings.Join(got, " "), "hidden") {
			t.Errorf("objects %v, want good and dotted", got)
		}
	})
}

// TestRenderReadsOnlyWhatItsPathReferences: a render reads --path and what its kustomizations
// name, not the rest of the checkout: a broken or huge file elsewhere costs nothing.
func TestRenderReadsOnlyWhatItsPathReferences(t *testing.T) {
	root := fixture.WriteTree(t, map[string]string{
		"clusters/prod/kustomization.yaml": "resources: [../../base, md.yaml]\n",
		"clusters/prod/md.yaml":            md("prod", 1),
		"base/kustomization.yaml":          "resources: [cm.yaml]\n",
		"base/cm.yaml":                     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\n",
		"base/unused.yaml":                 "not: [read",
		"clusters/staging/md.yaml":         md("staging", 1),
		"vendor/bomb.yaml":                 fixture.AliasBomb(),
	})
	var read []string
	res, err := Render(root, "clusters/prod", Options{Progress: func(f string) { read = append(read, f) }})
	if err != nil || res.Partial {
		t.Fatalf("Render: %v %v", err, res.Errors)
	}
	want := map[string]bool{"clusters/prod/kustomization.yaml": true, "clusters/prod/md.yaml": true, "base/kustomization.yaml": true, "base/cm.yaml": true}
	for _, f := range read {
		if !want[f] {
			t.Errorf("the render read %s", f)
		}
	}
}

// TestRenderBudgets: a render that reads more files or bytes, or produces more objects, than its
// budget fails whole, naming the budget, instead of taking the daemon's memory.
func TestRenderBudgets(t *testing.T) {
	files := map[string]string{"kustomization.yaml": "resources: [a.yaml, b.yaml, c.yaml]\n"}
	for _, n := range []string{"a", "b", "c"} {
		files[n+".yaml"] = md(n, 1) + "---\n" + strings.Replace(md(n+"-2", 1), "MachineDeployment", "MachineSet", 1)
	}
	for _, tt := range []struct {
		limits Limits
		want   string
	}{
		{Limits{MaxFiles: 3}, "more than 3 files read (--render-max-files)"},
		{Limits{MaxBytes: 400}, "more than 400 bytes read (--render-max-bytes)"},
		{Limits{MaxObjects: 5}, "more than 5 objects rendered (--render-max-objects)"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Render(fixture.WriteTree(t, files), "", Options{Limits: tt.limits})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Render = %v, want %q", err, tt.want)
			}
			if !errors.Is(err, errBudget) {
				t.Errorf("%v is not a budget error", err)
			}
		})
	}
	t.Run("within budget", func(t *testing.T) {
		res, err := Render(fixture.WriteTree(t, files), "", Options{Limits: Limits{MaxFiles: 4, MaxObjects: 6}})
		if err != nil || len(res.Objects) != 6 {
			t.Fatalf("Render: %v", err)
		}
	})
}
