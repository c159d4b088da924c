// Package cli builds driftd's command line: the `run`, `plan` and `version` commands, their
// option groups and flags, and the exit codes.
//
// It owns parsing and wiring only. What a command does lives in the packages it wires together;
// cmd/driftd calls Execute and nothing else, so tests run the same commands in-process.
package cli
