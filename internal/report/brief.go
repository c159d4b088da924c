package report

import "strings"

// Brief shortens an API server error for people: a validation error (often an admission
// webhook's) embeds the whole rejected object as its "Invalid value", which would push the reason
// that follows it — "field is immutable…" — out of an Event's 1 KiB note. Each embedded JSON
// object or list is replaced by "{…}" / "[…]"; the rest is kept as is.
func Brief(msg string) string {
	const marker = "Invalid value: "
	var sb strings.Builder
	for {
		i := strings.Index(msg, marker)
		if i < 0 {
			sb.WriteString(msg)
			return sb.String()
		}
		start := i + len(marker)
		sb.WriteString(msg[:start])
		msg = msg[start:]
		if msg == "" || (msg[0] != '{' && msg[0] != '[') {
			continue
		}
		end := jsonEnd(msg)
		if end < 0 {
			sb.WriteString(msg)
			return sb.String()
		}
		if msg[0] == '{' {
			sb.WriteString("{…}")
		} else {
			sb.WriteString("[…]")
		}
		msg = msg[end:]
	}
}

// jsonEnd returns the index just past the JSON object or list s starts with, or -1 when it does
// not end.
func jsonEnd(s string) int {
	depth, inString, escaped := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}
