package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"

	"github.com/driftd/driftd/internal/diff"
	"github.com/driftd/driftd/internal/engine"
	"github.com/driftd/driftd/internal/report"
)

type planOptions struct {
	commonOptions
	output        string
	namespace     string
	failOnRollout bool
}

func newPlanCommand() *cobra.Command {
	o := &planOptions{}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Compare the fleet once and print the drift; writes nothing",
		Long: `plan fetches and renders the fleet repository, compares it with the management cluster and
prints every drifted object with the action "driftd run" would take. It writes nothing.

For every change to an object Cluster API makes Machines from, it says what the change does to
them by Cluster API's own rules: roll (Machines replaced: how many, and why), in-place, scale,
none or unknown; and it ends with how many Machines the revision replaces in how many clusters.
With --ref set to a branch that is not merged yet, it says that before the merge.

Exit codes: 0 no drift, 2 drift found, 3 (with --fail-on-rollout) drift whose correction replaces
Machines, 1 error (including objects that could not be checked).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.complete(cmd); err != nil {
				return err
			}
			if o.output != "table" && o.output != "json" {
				return fmt.Errorf("-o %q: use table or json", o.output)
			}
			return o.run(cmd)
		},
	}
	o.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&o.failOnRollout, "fail-on-rollout", false, "exit 3 when applying the revision would make Cluster API replace Machines (for a pull request that needs a human to approve replacements)")
	cmd.Flags().StringVar(&o.namespace, "namespace", podNamespace(), "driftd's namespace, where the daemon remembers the last verified commit (read, never written, by plan)")
	return cmd
}

func (o *planOptions) run(cmd *cobra.Command) error {
	p, err := o.parts()
	if err != nil {
		return err
	}
	p.opts.Rollouts = true // what each change does to Machines
	e := engine.New(p.opts, engine.Deps{Source: p.src, Render: o.source.renderer(), Reader: p.client, Client: p.client, Mapper: p.client.RESTMapper(),
		Verified: o.source.verifiedStore(p.client, o.namespace, p.opts.Owner), VerifiedReadOnly: true,
		Inventory: engine.NewInventoryStore(p.client, o.namespace, p.opts.Owner), Log: logr.Discard()})
	res, err := e.Plan(cmd.Context())
	if err != nil {
		return err
	}
	recon := p.cloudReconciler(e, nil, logr.Discard())
	if res, err = withCloud(res, func() (*report.Result, error) { return recon.Plan(cmd.Context()) }, o.cloud.providers); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.output == "json" {
		err = writeJSON(out, res)
	} else {
		err = writeTable(out, res)
	}
	if err != nil {
		return err
	}
	for _, e := range res.Errors {
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", e)
	}
	switch {
	case len(res.Errors) > 0:
		return exitError{ExitError}
	case o.failOnRollout && diff.SumRollouts(res.Findings).Machines > 0:
		return exitError{ExitRollout}
	case res.Drifted():
		return exitError{ExitDrift}
	}
	return nil
}

// planDocument is the JSON document of `plan -o json`.
type planDocument struct {
	Revision string         `json:"revision"`
	Findings []diff.Finding `json:"findings"`
	// Rollouts totals what the findings' corrections do to Machines.
	Rollouts diff.Rollouts `json:"rollouts"`
	Errors   []string      `json:"errors,omitempty"`
}

func writeJSON(w io.Writer, res *report.Result) error {
	doc := planDocument{Revision: res.Revision, Findings: res.Findings, Rollouts: diff.SumRollouts(res.Findings)}
	if doc.Findings == nil {
		doc.Findings = []diff.Finding{}
	}
	for _, err := range res.Errors {
		doc.Errors = append(doc.Errors, err.Error())
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func writeTable(w io.Writer, res *report.Result) error {
	fmt.Fprintf(w, "Revision %s: ", res.Revision)
	if len(res.Findings) == 0 {
		fmt.Fprintln(w, "no drift")
		return nil
	}
	fmt.Fprintf(w, "%d drifted\n\n", len(res.Findings))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tOBJECT\tCLASS\tACTION\tMACHINES\tDETAIL")
	for _, f := range res.Findings {
		cluster := f.Cluster
		if cluster == "" {
			cluster = "-"
		}
		detail := detailOf(f)
		if line, _, cut := strings.Cut(detail, "\n"); cut {
			// A webhook's message can go on for lines (a diff of the object): a row stays a row.
			detail = strings.TrimRight(line, " ") + " … (all of it: plan -o json)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", report.Escape(cluster), report.Escape(f.Object.String()), f.Class, f.Action, machinesOf(f.Rollout), report.Escape(detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range res.Findings {
		if f.Rollout != nil {
			fmt.Fprintf(w, "\n%s.\n", diff.SumRollouts(res.Findings))
			break
		}
	}
	return nil
}

// machinesOf is a finding's MACHINES cell: its effect on Machines and how many.
func machinesOf(r *diff.Rollout) string {
	switch {
	case r == nil:
		return "-"
	case r.Effect == diff.EffectNone || r.Effect == diff.EffectUnknown:
		return string(r.Effect)
	}
	return fmt.Sprintf("%s %d", r.Effect, r.Machines)
}

func detailOf(f diff.Finding) string {
	var parts []string
	if f.Action == diff.ActionBlocked && f.File != "" {
		parts = append(parts, "from "+f.File) // what to fix in Git
	}
	if len(f.Fields) > 0 {
		parts = append(parts, report.FieldList(f.Fields))
	}
	if f.Reason != "" {
		parts = append(parts, f.Reason)
	}
	if f.Rollout != nil {
		parts = append(parts, f.Rollout.Reason)
	}
	return strings.Join(parts, "; ")
}
