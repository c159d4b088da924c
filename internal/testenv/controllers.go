package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// StartControllers runs kube-controller-manager beside the control plane with only the named
// controllers on (for example "clusterrole-aggregation-controller", which fills an aggregated
// ClusterRole as a real cluster does); it stops with the Env.
func (e *Env) StartControllers(controllers ...string) error {
	work, err := os.MkdirTemp("", "driftd-kcm-")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := writeKubeconfig(e, kubeconfig); err != nil {
		return err
	}
	logFile := filepath.Join(work, "kube-controller-manager.log")
	cmd, exited, err := startProcess(filepath.Join(e.assets, "kube-controller-manager"), []string{
		"--kubeconfig", kubeconfig, "--controllers", strings.Join(controllers, ","), "--leader-elect=false", "--secure-port=0",
	}, logFile)
	if err != nil {
		return err
	}
	e.before = append(e.before, func() {
		stopProcess(cmd, exited)
		_ = os.RemoveAll(work)
	})
	select {
	case <-exited:
		return fmt.Errorf("kube-controller-manager exited; its log: %s", tail(logFile))
	case <-time.After(time.Second):
	}
	return nil
}
