package main

import "os"

// isTerminal reports whether f is a terminal. /dev/null is a character device
// but not a terminal: a command run with no input (cron, CI, exec without
// stdin) is treated as non-interactive.
func isTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	return isTTY(f)
}
