package report

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Cut returns s as valid UTF-8 of at most max bytes, cut on a character boundary and ending in
// "..." when it was cut. The API server measures an Event's note in bytes (1 KiB at most) and
// decodes an invalid byte as U+FFFD, three bytes: a note cut inside a character grows past the
// limit and the whole Event is refused.
func Cut(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	const more = "..."
	end := max - len(more)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + more
}

// Escape makes s safe to print in one row of a terminal table: control characters (an escape
// sequence in a file name, a newline, a carriage return) and invalid bytes are written as Go
// escapes, so a file name cannot move the cursor, clear the screen or forge a row.
func Escape(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r):
			q := fmt.Sprintf("%+q", string(r))
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
