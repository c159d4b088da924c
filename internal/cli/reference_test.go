package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

const referenceDoc = "../../docs/configuration.md"

// flagTable renders the flags of fs as the Markdown table docs/configuration.md holds.
func flagTable(fs *pflag.FlagSet) string {
	var sb strings.Builder
	sb.WriteString("| flag / config key | type | default | meaning |\n|---|---|---|---|\n")
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		def := f.DefValue
		if def == "" || def == "[]" {
			def = "—"
		}
		fmt.Fprintf(&sb, "| `--%s` | %s | `%s` | %s |\n", f.Name, f.Value.Type(), def, strings.ReplaceAll(f.Usage, "|", "\\|"))
	})
	return sb.String()
}

// section returns the text between the markers <!-- begin NAME --> and <!-- end NAME -->.
func section(doc, name string) (string, bool) {
	begin, end := "<!-- begin "+name+" -->\n", "<!-- end "+name+" -->"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", false
	}
	return doc[i+len(begin) : j], true
}

// replaceSection puts body between the markers of section name.
func replaceSection(doc, name, body string) string {
	begin, end := "<!-- begin "+name+" -->\n", "<!-- end "+name+" -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	return doc[:i+len(begin)] + body + doc[j:]
}

// TestConfigurationReferenceMatchesTheFlags keeps docs/configuration.md equal to the flags of
// `driftd run` and `driftd plan`. UPDATE_DOCS=1 rewrites the tables.
func TestConfigurationReferenceMatchesTheFlags(t *testing.T) {
	data, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	root := newRootCommand(os.Stdout, os.Stderr)
	for _, name := range []string{"run", "plan"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		want := flagTable(cmd.Flags())
		got, ok := section(doc, name)
		if os.Getenv("UPDATE_DOCS") == "1" {
			if !ok {
				t.Fatalf("%s has no markers for %s", referenceDoc, name)
			}
			doc = replaceSection(doc, name, want)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s does not match the flags of driftd %s (-flags +doc); run UPDATE_DOCS=1 go test ./internal/cli:\n%s", referenceDoc, name, diff)
		}
	}
	if os.Getenv("UPDATE_DOCS") == "1" {
		if err := os.WriteFile(referenceDoc, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
