package diff

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ContestPolicy says when a field another writer keeps setting back counts as contested, and how
// long driftd then waits before it corrects again.
type ContestPolicy struct {
	// SetBacks is how many of driftd's corrections may be undone within Window before the object
	// is contested; 3 when zero.
	SetBacks int
	// Window is how far back corrections count, and how long an object must stay clean to be
	// forgiven; 10 minutes when zero.
	Window time.Duration
	// Backoff is the first wait of a contested object, doubled after every further set-back; one
	// minute when zero.
	Backoff time.Duration
	// MaxBackoff caps the wait; one hour when zero.
	MaxBackoff time.Duration
}

func (p ContestPolicy) withDefaults() ContestPolicy {
	if p.SetBacks <= 0 {
		p.SetBacks = 3
	}
	if p.Window <= 0 {
		p.Window = 10 * time.Minute
	}
	if p.Backoff <= 0 {
		p.Backoff = time.Minute
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = time.Hour
	}
	return p
}

// Contest is the history of driftd's corrections of one object, to notice a second writer that
// sets a field back every time (Flux or Argo CD applying another value, a script in a loop) and to
// stop a hot loop of corrections: after SetBacks corrections undone within Window, driftd holds
// its correction for Backoff, and after each further set-back for twice as long. It is pure: the
// time is a parameter.
type Contest struct {
	corrections []time.Time
	lastDrift   time.Time
	until       time.Time
	backoff     time.Duration
	managers    []string
	// Episode counts the holds, so that each is announced once.
	Episode int
}

// Observe records drift found at now, set by managers (the field managers of the differing
// fields), and says whether the correction must wait; reason names both writers and the wait.
func (c *Contest) Observe(p ContestPolicy, now time.Time, managers []string) (hold bool, until time.Time, reason string) {
	p = p.withDefaults()
	if !c.lastDrift.IsZero() && now.Sub(c.lastDrift) > p.Window && now.After(c.until) {
		*c = Contest{Episode: c.Episode} // clean for a whole window: forgiven
	}
	c.lastDrift = now
	for _, m := range managers {
		if m != "" && m != fieldManager && !slices.Contains(c.managers, m) {
			c.managers = append(c.managers, m)
		}
	}
	if now.Before(c.until) {
		return true, c.until, c.reason()
	}
	// Corrections undone since the last hold ended, within the window.
	since := now.Add(-p.Window)
	if c.until.After(since) {
		since = c.until
	}
	undone := 0
	for _, t := range c.corrections {
		if !t.Before(since) {
			undone++
		}
	}
	contested := c.backoff > 0 && undone >= 1 // contested before: one set-back after a retry holds again
	if undone >= p.SetBacks || contested {
		if c.backoff == 0 {
			c.backoff = p.Backoff
		} else {
			c.backoff = min(2*c.backoff, p.MaxBackoff)
		}
		c.until = now.Add(c.backoff)
		c.Episode++
		return true, c.until, c.reason()
	}
	return false, time.Time{}, ""
}

// Corrected records driftd's correction at now.
func (c *Contest) Corrected(now time.Time) {
	c.corrections = append(c.corrections, now)
	if n := len(c.corrections); n > 16 {
		c.corrections = slices.Clone(c.corrections[n-16:])
	}
}

// Holding reports whether the correction waits at now.
func (c *Contest) Holding(now time.Time) bool { return now.Before(c.until) }

func (c *Contest) reason() string {
	others := "another writer"
	if len(c.managers) > 0 {
		others = strings.Join(c.managers, ", ")
	}
	return fmt.Sprintf("contested: driftd's corrections were set back by %s; driftd waits %s (until %s) before it corrects again",
		others, c.backoff, c.until.UTC().Format(time.RFC3339))
}
