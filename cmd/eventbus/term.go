package main

import (
	"os"

	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal (golang.org/x/term: a termios
// ioctl, so /dev/null, a character device, is not one: a command run with no
// input — cron, CI, exec without stdin — is treated as non-interactive).
func isTerminal(f *os.File) bool {
	return f != nil && term.IsTerminal(int(f.Fd()))
}
