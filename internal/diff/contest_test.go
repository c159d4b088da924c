package diff

import (
	"strings"
	"testing"
	"time"
)

func TestContestHoldsAfterRepeatedSetBacksAndBacksOff(t *testing.T) {
	p := ContestPolicy{SetBacks: 3, Window: 10 * time.Minute, Backoff: time.Minute, MaxBackoff: 4 * time.Minute}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	c := &Contest{}

	// Three corrections set back one after the other: the first three set-backs are corrected.
	for i := range 3 {
		if hold, _, _ := c.Observe(p, at(time.Duration(i)*time.Second), []string{"flux"}); hold {
			t.Fatalf("set-back %d held; the first %d are corrected", i+1, p.SetBacks)
		}
		c.Corrected(at(time.Duration(i)*time.Second + 100*time.Millisecond))
	}
	hold, until, reason := c.Observe(p, at(3*time.Second), []string{"flux"})
	if !hold || !until.Equal(at(3*time.Second+time.Minute)) {
		t.Fatalf("fourth set-back: hold %v until %v, want a hold until %v", hold, until, at(3*time.Second+time.Minute))
	}
	for _, want := range []string{"flux", "driftd", "1m0s"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not name %q", reason, want)
		}
	}
	episode := c.Episode
	// Flips during the hold stay held, in the same episode.
	if hold, _, _ := c.Observe(p, at(30*time.Second), []string{"flux"}); !hold || c.Episode != episode {
		t.Errorf("a flip during the hold: hold %v, episode %d→%d", hold, episode, c.Episode)
	}
	// After the hold: one correction is tried...
	if hold, _, _ := c.Observe(p, at(64*time.Second), []string{"flux"}); hold {
		t.Fatal("the correction after the hold was not tried")
	}
	c.Corrected(at(64 * time.Second))
	// ...and set back once more: held again, twice as long.
	hold, until, _ = c.Observe(p, at(65*time.Second), []string{"flux"})
	if !hold || !until.Equal(at(65*time.Second+2*time.Minute)) || c.Episode != episode+1 {
		t.Errorf("set back after the retry: hold %v until %v episode %d, want a hold until %v in episode %d",
			hold, until, c.Episode, at(65*time.Second+2*time.Minute), episode+1)
	}
	// The backoff is capped.
	for i := range 5 {
		now := until.Add(time.Second)
		c.Observe(p, now, []string{"flux"})
		c.Corrected(now)
		_, until, _ = c.Observe(p, now.Add(time.Second), []string{"flux"})
		if d := until.Sub(now.Add(time.Second)); d > p.MaxBackoff {
			t.Fatalf("round %d: waits %s, more than the cap %s", i, d, p.MaxBackoff)
		}
	}
	// Clean for a whole window: forgiven, the next set-back is corrected at once.
	later := until.Add(p.Window + time.Minute)
	if hold, _, _ := c.Observe(p, later, []string{"flux"}); hold {
		t.Error("drift after a clean window was held")
	}
}

func TestContestCountsOnlyCorrectionsWithinTheWindow(t *testing.T) {
	p := ContestPolicy{SetBacks: 3, Window: time.Minute}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := &Contest{}
	// A correction every 40 s: never three within a minute, so never held.
	for i := range 10 {
		now := t0.Add(time.Duration(i) * 40 * time.Second)
		if hold, _, _ := c.Observe(p, now, []string{"kubectl-scale"}); hold {
			t.Fatalf("correction %d held though corrections are 40 s apart in a 1 min window", i)
		}
		c.Corrected(now)
	}
}
