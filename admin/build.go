package admin

import (
	goruntime "runtime"
	"runtime/debug"
)

// Build is what the running binary says about its own build, from the
// Go toolchain's stamp (runtime/debug.ReadBuildInfo).
type Build struct {
	Version string // the main module's version; "(devel)" from a checkout
	// Commit, CommitTime and Modified are the vcs.* settings: empty when
	// the binary was built without VCS stamping (-buildvcs=false).
	Commit     string
	CommitTime string
	Modified   bool
	GoVersion  string
}

// ReadBuild reads the running binary's build stamp.
func ReadBuild() Build {
	b := Build{Version: "(unknown)", GoVersion: goruntime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
