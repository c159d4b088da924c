package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	yaml "go.yaml.in/yaml/v3"
)

// checkAliases refuses a YAML file whose aliases would add more than limit nodes once expanded.
// kustomize expands every alias of what it reads (kyaml's DeAnchor), so a "billion laughs" file
// of under 1 KiB — each anchor aliased ten times by the next — would take gigabytes and minutes.
// The expanded size is counted without expanding anything: each node's size is computed once and
// an alias costs the size of what it names, so the check takes time in proportion to the file.
// A file that is not YAML is left to kustomize, which reports it.
func checkAliases(data []byte, limit int) error {
	if !bytes.Contains(data, []byte("*")) {
		return nil // no alias at all (the common case): nothing to count
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	added := 0
	for doc := 1; ; doc++ {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return nil // not YAML: kustomize says what is wrong with it
		}
		c := aliasCounter{size: map[*yaml.Node]int{}, limit: limit - added}
		expanded, literal := c.count(&n), nodes(&n)
		if c.over || expanded-literal > limit-added {
			return fmt.Errorf("document %d: its YAML aliases expand to more than %d nodes (--render-max-alias-nodes); refused", doc, limit)
		}
		added += expanded - literal
	}
}

type aliasCounter struct {
	size  map[*yaml.Node]int
	limit int
	over  bool
	depth int
}

// count returns the number of nodes n stands for once every alias is expanded, stopping early (and
// setting over) when that is far beyond the limit.
func (c *aliasCounter) count(n *yaml.Node) int {
	if n == nil || c.over {
		return 0
	}
	if s, ok := c.size[n]; ok {
		return s
	}
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > 10_000 {
		c.over = true // an alias that names its own ancestor, or absurd nesting
		return 0
	}
	s := 1
	if n.Kind == yaml.AliasNode {
		s = c.count(n.Alias)
	}
	for _, child := range n.Content {
		s += c.count(child)
		if s > c.limit+1<<24 { // far past any limit: stop counting (and overflowing)
			c.over = true
			return s
		}
	}
	c.size[n] = s
	return s
}

// nodes counts the nodes of n as written, aliases counted once each.
func nodes(n *yaml.Node) int {
	s := 1
	for _, child := range n.Content {
		s += nodes(child)
	}
	return s
}
