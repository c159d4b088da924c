package report

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCutKeepsCharactersWhole(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		max  int
	}{
		{"two-byte characters", strings.Repeat("é", 2000), 1024},
		{"three-byte characters", strings.Repeat("€", 700), 1024},
		{"four-byte characters", strings.Repeat("🚀", 600), 1024},
		{"mixed, cut falls inside a character", "a" + strings.Repeat("日本", 400), 1024},
		{"invalid bytes", strings.Repeat("\xff", 2000), 1024},
		{"short", "fine", 1024},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Cut(tt.in, tt.max)
			if len(got) > tt.max {
				t.Errorf("%d bytes, want at most %d", len(got), tt.max)
			}
			if !utf8.ValidString(got) {
				t.Errorf("not valid UTF-8: %q", got[len(got)-8:])
			}
			// What the API server decodes is what was sent: no byte turns into U+FFFD on the way.
			if len(strings.ToValidUTF8(got, "\uFFFD")) != len(got) {
				t.Error("the note would grow when decoded")
			}
		})
	}
}

func TestEscapeKeepsARowARow(t *testing.T) {
	for in, want := range map[string]string{
		"fleet/\x1b[2J.yaml":          `fleet/\x1b[2J.yaml`,
		"fleet/a\nprod  Machine/x\tz": `fleet/a\nprod  Machine/x\tz`,
		"fleet/\r.yaml":               `fleet/\r.yaml`,
		"fleet/\u202egnp.yaml":        `fleet/\u202egnp.yaml`,
		"fleet/\xff.yaml":             `fleet/\xff.yaml`,
		"fleet/café.yaml":             "fleet/café.yaml",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %s, want %s", in, got, want)
		}
	}
}
