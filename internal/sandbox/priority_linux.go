package sandbox

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// lowerPriority raises the nice value of every thread of this process by by (to 19 at most), so that the daemon's
// corrections (and, on a shared node, the API server) go first while a commit renders. Linux
// keeps the nice value per thread and a new thread takes its creator's: it is set on every thread
// there is, a second time for one that was starting, and every later thread inherits it.
// Raising one's own nice value needs no privilege.
func lowerPriority(by int) error {
	// The raw system call answers 20 - nice.
	own, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		return err
	}
	nice := min(19, 20-own+by)
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
	}
	return nil
}
