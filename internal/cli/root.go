package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/driftd/driftd/internal/egress"
	"github.com/driftd/driftd/internal/version"
)

// Exit codes of driftd. `plan` uses all four; the other commands use ExitOK and ExitError.
const (
	// ExitOK means success; for `plan`, that no drift was found.
	ExitOK = 0
	// ExitError means driftd could not do its job: bad flags, an unreadable source, an API error.
	ExitError = 1
	// ExitDrift means `plan` found drift.
	ExitDrift = 2
	// ExitRollout means `plan --fail-on-rollout` found drift whose correction makes Cluster API
	// replace Machines.
	ExitRollout = 3
)

// exitError carries an exit code other than ExitError through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Execute runs driftd with args and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// Nothing in driftd sends a request through Go's default HTTP client: each of its clients has
	// a transport of its own, so a library that would reach out on its own cannot.
	egress.DenyDefaultTransport()
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return ExitError
	}
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "driftd",
		Short: "Keep a Cluster API fleet equal to its Git repository and to the real cloud",
		Long: `driftd compares a fleet's Git repository, the live Cluster API objects of the management
cluster and the real cloud inventory, reports drift as Kubernetes Events and corrects it
with server-side apply, replacing drifted machines the immutable way.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCommand(), newPlanCommand(), newVersionCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print driftd's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
			return err
		},
	}
}
