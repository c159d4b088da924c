package endpoint

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	inventoryv1 "github.com/driftd/driftd/api/inventory/v1"
	"github.com/driftd/driftd/internal/egress"
	"github.com/driftd/driftd/internal/infra"
)

// Defaults.
const (
	// DefaultTimeout bounds one page's request.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxPages bounds how many pages one snapshot may take: an endpoint that pages forever
	// gives no answer.
	DefaultMaxPages = 1000
	// DefaultMaxSnapshotBytes bounds the bodies of one snapshot's pages together.
	DefaultMaxSnapshotBytes = 128 << 20
	// maxErrorBytes is how much of an error answer is quoted.
	maxErrorBytes = 512
)

// Options configure a Provider.
type Options struct {
	// Name is the provider's name: the scheme of the providerIDs its controller writes (Name://…).
	Name string
	// URL is the endpoint's base URL; driftd POSTs to URL + /v1/snapshot. https://, or http:// to a
	// loopback address only (a token and an answer that decides replacements never cross a
	// network in the clear).
	URL string
	// TokenFile holds the bearer token; it is read at every snapshot, so a rotated token is used
	// at once. Empty sends no Authorization header.
	TokenFile string
	// CAFile is a PEM bundle of the certificate authorities to trust instead of the system's.
	CAFile string
	// Timeout bounds one page's request; DefaultTimeout when zero.
	Timeout time.Duration
	// MaxPages bounds one snapshot's pages; DefaultMaxPages when zero.
	MaxPages int
	// MaxSnapshotBytes bounds the bodies of one snapshot's pages together; DefaultMaxSnapshotBytes
	// when zero. An answer beyond it is incomplete.
	MaxSnapshotBytes int64
	// Transport replaces the HTTP transport (tests); CAFile is then ignored.
	Transport http.RoundTripper
}

// Provider reads one inventory endpoint.
type Provider struct {
	opts   Options
	url    string
	client *http.Client
}

// New checks opts and returns a Provider.
func New(opts Options) (*Provider, error) {
	if !infra.ValidProviderName(opts.Name) || opts.Name == infra.ProviderAWS || opts.Name == infra.ProviderVSphere {
		return nil, fmt.Errorf("inventory %q: the name must be the scheme of the provider's providerIDs (lower-case letters, digits, dashes), and not aws or vsphere", opts.Name)
	}
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("inventory %s: url %q is not an absolute URL", opts.Name, opts.URL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !infra.Loopback(u.Hostname()) {
			return nil, fmt.Errorf("inventory %s: url %s is plain http to a host that is not loopback; use https", opts.Name, opts.URL)
		}
	default:
		return nil, fmt.Errorf("inventory %s: url %q must be https:// (or http:// to a loopback address)", opts.Name, opts.URL)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("inventory %s: timeout must be positive, got %s", opts.Name, opts.Timeout)
	}
	if opts.MaxPages == 0 {
		opts.MaxPages = DefaultMaxPages
	}
	if opts.MaxSnapshotBytes == 0 {
		opts.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	transport := opts.Transport
	if transport == nil {
		t := egress.NewTransport()
		t.Proxy = nil // the endpoint is the provider's, reached directly
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("inventory %s: caFile: %w", opts.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("inventory %s: caFile %s holds no PEM certificate", opts.Name, opts.CAFile)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		transport = t
	}
	return &Provider{opts: opts, url: strings.TrimSuffix(opts.URL, "/") + inventoryv1.SnapshotPath,
		client: &http.Client{Transport: transport, Timeout: opts.Timeout,
			// A redirect could carry the token elsewhere: the endpoint answers where it is configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// Provider is the provider's name, its providerID scheme.
func (p *Provider) Provider() string { return p.opts.Name }

// Snapshot asks the endpoint for the instances and node pools of clusters, page after page. A
// cluster the endpoint reports unavailable, or one with an instance driftd cannot take as the
// endpoint states it, is unavailable; an answer that fails or is not complete makes every cluster
// unavailable and is an error.
func (p *Provider) Snapshot(ctx context.Context, clusters []infra.Cluster) (*infra.Snapshot, error) {
	snap := infra.NewSnapshot(p.opts.Name)
	count := snap.CallCounter(nil)
	fail := func(err error) (*infra.Snapshot, error) {
		err = fmt.Errorf("inventory endpoint %s: %w", p.opts.Name, err)
		snap.FailClusters(err, clusters...)
		snap.Complete = false
		return snap, err
	}
	token, err := p.token()
	if err != nil {
		return fail(err)
	}
	req := inventoryv1.SnapshotRequest{APIVersion: inventoryv1.APIVersion}
	asked := map[string]bool{}
	for _, c := range clusters {
		rc := inventoryv1.RequestedCluster{ClusterRef: inventoryv1.ClusterRef{Namespace: c.Namespace, Name: c.Name}}
		if c.InfrastructureKind != "" {
			rc.InfrastructureRef = &inventoryv1.ObjectRef{APIGroup: c.InfrastructureGroup, Kind: c.InfrastructureKind, Name: c.InfrastructureName}
		}
		req.Clusters = append(req.Clusters, rc)
		asked[c.Key()] = true
	}
	a := &assembly{name: p.opts.Name, asked: asked, snap: snap, byID: map[string]int{}}
	tokens := map[string]bool{}
	left := p.opts.MaxSnapshotBytes
	for page := 1; ; page++ {
		if page > p.opts.MaxPages {
			return fail(fmt.Errorf("more than %d pages; the answer is taken as incomplete", p.opts.MaxPages))
		}
		count("snapshot")
		resp, err := p.page(ctx, token, &req, &left)
		if err != nil {
			return fail(fmt.Errorf("page %d: %w", page, err))
		}
		a.add(resp)
		if resp.NextPageToken == "" {
			if !resp.Complete {
				return fail(errors.New("the answer does not say it is complete; nothing is concluded from what it lacks"))
			}
			break
		}
		if tokens[resp.NextPageToken] {
			return fail(fmt.Errorf("page %d: nextPageToken %q was already given; the endpoint pages in a loop", page, resp.NextPageToken))
		}
		tokens[resp.NextPageToken] = true
		req.PageToken = resp.NextPageToken
	}
	if len(clusters) > 0 && len(snap.Unavailable) == len(clusters) {
		snap.Complete = false
		return snap, errors.Join(snap.Errors...)
	}
	return snap, nil
}

func (p *Provider) token() (string, error) {
	if p.opts.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(p.opts.TokenFile)
	if err != nil {
		return "", fmt.Errorf("tokenFile: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("tokenFile %s is empty", p.opts.TokenFile)
	}
	return t, nil
}

// page asks for one page; left is what the snapshot may still read, and is reduced by this page.
func (p *Provider) page(ctx context.Context, token string, req *inventoryv1.SnapshotRequest, left *int64) (*inventoryv1.SnapshotResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", "driftd")
	if token != "" {
		hr.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := p.client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(res.Body, *left+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(data)) > *left {
		return nil, fmt.Errorf("the answer is larger than %d MiB (--inventory-max-bytes); it is taken as incomplete", p.opts.MaxSnapshotBytes>>20)
	}
	*left -= int64(len(data))
	if res.StatusCode != http.StatusOK {
		var st inventoryv1.Status
		msg := string(data)
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return nil, fmt.Errorf("%s: %s", res.Status, quote(msg, token))
	}
	var out inventoryv1.SnapshotResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("the answer is not a snapshot response: %w", err)
	}
	if out.APIVersion != inventoryv1.APIVersion {
		return nil, fmt.Errorf("the answer's apiVersion is %q, not %s", out.APIVersion, inventoryv1.APIVersion)
	}
	return &out, nil
}

// quote makes an error answer safe to put in an Event or a log: without the token (an endpoint or
// a proxy may echo the request's headers), printable (control characters and invalid UTF-8
// dropped), and cut to maxErrorBytes on a character boundary.
func quote(msg, token string) string {
	// Printable first, then without the token: dropping a byte must not put the token together.
	var clean strings.Builder
	for _, r := range strings.ToValidUTF8(msg, "") {
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			clean.WriteRune(' ')
		case unicode.IsPrint(r):
			clean.WriteRune(r)
		}
	}
	msg = clean.String()
	if token != "" {
		msg = strings.ReplaceAll(msg, token, "REDACTED")
	}
	var b strings.Builder
	for _, r := range msg {
		if b.Len()+utf8.RuneLen(r) > maxErrorBytes {
			out := b.String()
			// A cut that ends in the token's beginning would show part of it.
			for k := len(token) - 1; k >= 4; k-- {
				if strings.HasSuffix(out, token[:k]) {
					out = strings.TrimSuffix(out, token[:k]) + "REDACTED"
					break
				}
			}
			return strings.TrimSpace(out) + "…"
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// assembly puts the pages of one answer together.
type assembly struct {
	name  string
	asked map[string]bool
	snap  *infra.Snapshot
	byID  map[string]int // instance ID → index in snap.Instances
}

var states = map[string]string{
	inventoryv1.StateRunning: infra.StateRunning, inventoryv1.StatePending: infra.StatePending,
	inventoryv1.StateStopping: infra.StateStopping, inventoryv1.StateStopped: infra.StateStopped,
	inventoryv1.StateSuspended: infra.StateSuspended, inventoryv1.StateTerminated: infra.StateTerminated,
}

func (a *assembly) unavailable(cluster string, err error) {
	if _, done := a.snap.Unavailable[cluster]; done {
		return
	}
	err = fmt.Errorf("inventory endpoint %s: %w", a.name, err)
	a.snap.Unavailable[cluster] = err
	a.snap.Errors = append(a.snap.Errors, err)
}

func (a *assembly) add(resp *inventoryv1.SnapshotResponse) {
	for _, u := range resp.Unavailable {
		key := infra.Cluster{Namespace: u.Cluster.Namespace, Name: u.Cluster.Name}.Key()
		if a.asked[key] {
			a.unavailable(key, fmt.Errorf("the endpoint cannot read cluster %s: %s", key, u.Reason))
		}
	}
	for _, in := range resp.Instances {
		key := infra.Cluster{Namespace: in.Cluster.Namespace, Name: in.Cluster.Name}.Key()
		if !a.asked[key] {
			continue // not a cluster driftd asked about: not its to judge
		}
		provider, id, err := infra.InstanceKey(in.ProviderID)
		switch {
		case err != nil:
			a.unavailable(key, fmt.Errorf("instance %q of cluster %s: %w", in.Name, key, err))
			continue
		case provider != a.name:
			a.unavailable(key, fmt.Errorf("instance %s of cluster %s is not a %s:// providerID", in.ProviderID, key, a.name))
			continue
		}
		state, ok := states[in.State]
		if !ok {
			a.unavailable(key, fmt.Errorf("instance %s of cluster %s has state %q, not one of running, pending, stopping, stopped, suspended, terminated", in.ProviderID, key, in.State))
			continue
		}
		inst := infra.Instance{Provider: a.name, ID: id, ProviderID: in.ProviderID, Cluster: key, Name: in.Name,
			Type: in.Type, Image: in.Image, State: state, Zone: in.Zone, Pool: in.Pool}
		if in.LaunchTime != nil {
			inst.LaunchTime = *in.LaunchTime
		}
		if i, seen := a.byID[id]; seen {
			// Listed twice (pages that overlap): the same instance is one; two different ones are
			// an answer that contradicts itself.
			if prev := a.snap.Instances[i]; prev.Cluster != inst.Cluster || prev.State != inst.State {
				a.unavailable(key, fmt.Errorf("instance %s is listed twice, as %s %s and as %s %s", in.ProviderID, prev.Cluster, prev.State, key, state))
				if prev.Cluster != key {
					a.unavailable(prev.Cluster, fmt.Errorf("instance %s is listed twice, as %s %s and as %s %s", in.ProviderID, prev.Cluster, prev.State, key, state))
				}
			}
			continue
		}
		a.byID[id] = len(a.snap.Instances)
		a.snap.Instances = append(a.snap.Instances, inst)
	}
	for _, pool := range resp.Pools {
		key := infra.Cluster{Namespace: pool.Cluster.Namespace, Name: pool.Cluster.Name}.Key()
		if !a.asked[key] {
			continue
		}
		if pool.Name == "" || pool.Min < 0 || pool.Max < pool.Min || pool.Desired < 0 {
			a.unavailable(key, fmt.Errorf("node pool %q of cluster %s has sizes that cannot be (min %d, max %d, desired %d)", pool.Name, key, pool.Min, pool.Max, pool.Desired))
			continue
		}
		if slices.ContainsFunc(a.snap.Pools, func(p infra.NodePool) bool { return p.Name == pool.Name && p.Cluster == key }) {
			continue
		}
		a.snap.Pools = append(a.snap.Pools, infra.NodePool{Provider: a.name, Name: pool.Name, Cluster: key,
			Desired: pool.Desired, Min: pool.Min, Max: pool.Max, Members: pool.Members})
	}
}
