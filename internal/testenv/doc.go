// Package testenv is driftd's test bed: the real servers every integration test runs against.
//
// It starts a kube-apiserver and etcd built from source (hack/testbin.sh) through
// controller-runtime's envtest, with the real CRDs of Cluster API, CAPA and CAPV read from the
// Go module cache at their pinned versions; it starts moto's EC2/Auto Scaling server on a free
// loopback port and govmomi's vSphere simulator in-process.
//
// Each integration test package starts one Env from its TestMain with Main. A server that cannot
// start fails the test, saying what the machine must have (see Unavailable): never a skip; no process
// outlives the test binary, even when it is killed or times out.
//
// testenv owns starting and stopping servers; it holds no driftd logic and is imported by tests only.
package testenv
