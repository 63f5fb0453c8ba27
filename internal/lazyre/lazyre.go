// Package lazyre compiles package-level regular expressions on first use.
// Every container start re-executes the runtime's binary as the container
// init, which runs every package's initialisation: patterns compiled there
// would be paid for on each start, by every module.
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr once, on its first call, and
// panics if expr is invalid (like regexp.MustCompile).
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
