// Command driftd keeps a Cluster API fleet equal to its Git repository and to the real cloud.
//
// main only wires: the commands, their options and flags live in internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// Mozilla's CA roots, used when the system has none: the image carries no certificate bundle.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/driftd/driftd/internal/cli"
	"github.com/driftd/driftd/internal/sandbox"
)

func main() {
	// A render runs in a child process of this same binary (internal/sandbox).
	sandbox.RunChildIfAsked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
