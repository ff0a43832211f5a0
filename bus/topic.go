package bus

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTypeLength is the longest event type accepted, in bytes.
const MaxTypeLength = 255

// ValidateType reports whether t is a valid event type: dot-separated tokens,
// each one or more of [a-z0-9_-], 1–255 bytes in all. The error wraps
// ErrInvalidType and says what was wrong and what is allowed.
func ValidateType(t string) error {
	if err := checkTokens(t, false); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidType, t, err)
	}
	return nil
}

// ValidatePattern reports whether p is a valid subscription pattern. A pattern
// is an event type in which a token may be "*" (exactly one token) and the
// last token may be ">" (one or more trailing tokens), as in NATS subjects.
// A plain event type is a valid pattern that matches only itself.
func ValidatePattern(p string) error {
	if err := checkTokens(p, true); err != nil {
		return fmt.Errorf("%w %q: %v (a pattern is dot-separated tokens of [a-z0-9_-]; "+
			"a token may be \"*\" for exactly one token, and the last token may be \">\" for one or more)",
			ErrInvalidPattern, p, err)
	}
	return nil
}

// IsPattern reports whether s contains a wildcard token ("*" or ">").
// It does not validate s.
func IsPattern(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "*" || tok == ">" {
			return true
		}
	}
	return false
}

// Match reports whether the event type t matches pattern p. Both are assumed
// valid (see ValidateType, ValidatePattern); Match allocates nothing.
func Match(p, t string) bool {
	for {
		pi := strings.IndexByte(p, '.')
		ti := strings.IndexByte(t, '.')
		ptok, ttok := p, t
		if pi >= 0 {
			ptok = p[:pi]
		}
		if ti >= 0 {
			ttok = t[:ti]
		}
		switch {
		case ptok == ">":
			return pi < 0 // ">" is last; it matches the rest (at least one token)
		case ptok != "*" && ptok != ttok:
			return false
		}
		// Tokens matched; both must end together or continue together.
		if pi < 0 || ti < 0 {
			return pi < 0 && ti < 0
		}
		p, t = p[pi+1:], t[ti+1:]
	}
}

func checkTokens(s string, wildcards bool) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > MaxTypeLength {
		return fmt.Errorf("is %d bytes, the limit is %d", len(s), MaxTypeLength)
	}
	n := 0
	for tok := range strings.SplitSeq(s, ".") {
		n++
		if tok == "" {
			return errors.New("empty token: dots must separate non-empty tokens")
		}
		if wildcards && tok == "*" {
			continue
		}
		if wildcards && tok == ">" {
			if n != strings.Count(s, ".")+1 {
				return errors.New("\">\" may only be the last token")
			}
			continue
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' {
				continue
			}
			if c >= 'A' && c <= 'Z' {
				return fmt.Errorf("token %q has upper case; tokens must match [a-z0-9_-]+", tok)
			}
			if !wildcards && (c == '*' || c == '>') {
				return fmt.Errorf("wildcard %q is not allowed in an event type; tokens must match [a-z0-9_-]+", string(c))
			}
			return fmt.Errorf("token %q has %q; tokens must match [a-z0-9_-]+", tok, string(c))
		}
	}
	return nil
}
