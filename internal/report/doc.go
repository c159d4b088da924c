// Package report tells people about drift: Kubernetes Events on the drifted objects (reporting
// controller "driftd"), Warning Events and a summary on the status ConfigMap driftd-status, and
// Prometheus metrics under the driftd_ prefix.
//
// It owns wording, de-duplication (the same drift is announced once; a new occurrence again) and
// keeping secrets out: it only ever prints diff.Field values, which diff has already masked for
// Secrets. It decides nothing and writes no fleet object.
package report
