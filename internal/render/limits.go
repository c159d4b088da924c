package render

import "time"

// Limits bound what one render may consume. The zero value of a field takes its default; the
// defaults fit a fleet of 10,000 clusters with room to spare, and stop a repository that holds far
// more than a fleet (a vendored tree, a generated dump) or a YAML bomb before it costs the daemon
// its memory.
type Limits struct {
	// MaxFiles is how many files of the checkout one render may read (only --path and what its
	// kustomizations reference are read). Default 100,000.
	MaxFiles int
	// MaxBytes is how many bytes of the checkout one render may read. Default 256 MiB.
	MaxBytes int64
	// MaxObjects is how many objects one render may produce. Default 250,000.
	MaxObjects int
	// MaxAliasNodes is how many YAML nodes the aliases of one file may add when expanded (a
	// "billion laughs" file of under 1 KiB expands to billions). Default 100,000.
	MaxAliasNodes int
	// Timeout is how long a sandboxed render may take before it is stopped. Default 5 minutes.
	// Render itself does not enforce it: the sandbox that runs it in a child process does.
	Timeout time.Duration
	// MaxMemory is how much memory a sandboxed render's process may hold before it is stopped.
	// Default 512 MiB. Enforced by the sandbox, like Timeout.
	MaxMemory int64
}

// Defaults of Limits.
const (
	DefaultMaxFiles      = 100_000
	DefaultMaxBytes      = 256 << 20
	DefaultMaxObjects    = 250_000
	DefaultMaxAliasNodes = 100_000
	DefaultTimeout       = 5 * time.Minute
	DefaultMaxMemory     = 512 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxObjects <= 0 {
		l.MaxObjects = DefaultMaxObjects
	}
	if l.MaxAliasNodes <= 0 {
		l.MaxAliasNodes = DefaultMaxAliasNodes
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxMemory <= 0 {
		l.MaxMemory = DefaultMaxMemory
	}
	return l
}

// WithDefaults returns l with every unset field at its default.
func (l Limits) WithDefaults() Limits { return l.withDefaults() }

// maxEntries bounds the folder entries a render lists (names only, never read): ten per file it
// may read.
func (l Limits) maxEntries() int { return 10 * l.MaxFiles }
