package main

import (
	"encoding/json"
	"fmt"
	"io"
	goruntime "runtime"

	"github.com/spf13/cobra"

	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/runtime"
)

// versionInfo is `version --json`: what an operator pastes into a bug
// report. Every field is present; unknown strings are "" and an absent
// Landlock is ABI 0.
type versionInfo struct {
	Version string `json:"version"` // the main module's version ("(devel)" from a checkout)
	Commit  string `json:"commit"`  // vcs.revision, "" when built without VCS stamping
	// CommitTime is vcs.time (RFC 3339); Modified is vcs.modified: the
	// tree had uncommitted changes.
	CommitTime  string `json:"commit_time"`
	Modified    bool   `json:"modified"`
	GoVersion   string `json:"go_version"`
	Platform    string `json:"platform"`
	Libseccomp  string `json:"libseccomp"`   // the linked library, "major.minor.micro"
	SeccompAPI  uint   `json:"seccomp_api"`  // libseccomp's API level on this kernel
	LandlockABI int    `json:"landlock_abi"` // this host's; 0: Landlock is off
}

func buildVersion() versionInfo {
	b := admin.ReadBuild()
	v := versionInfo{
		Version: b.Version, Commit: b.Commit, CommitTime: b.CommitTime, Modified: b.Modified,
		GoVersion: b.GoVersion, Platform: goruntime.GOOS + "/" + goruntime.GOARCH,
	}
	major, minor, micro := libseccomp.GetLibraryVersion()
	v.Libseccomp = fmt.Sprintf("%d.%d.%d", major, minor, micro)
	if api, err := libseccomp.GetAPI(); err == nil {
		v.SeccompAPI = api
	}
	// Only the Landlock probe matters here; a cgroup root that cannot be
	// read does not make the version unknown.
	if h, err := runtime.DetectHost("/sys/fs/cgroup", ""); err == nil || h.LandlockABI != 0 {
		v.LandlockABI = h.LandlockABI
	}
	return v
}

// short is the one line of --version.
func (v versionInfo) short() string {
	commit := v.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if commit == "" {
		commit = "unknown"
	}
	if v.Modified {
		commit += "-dirty"
	}
	return fmt.Sprintf("blvm-sandbox %s (commit %s, %s, libseccomp %s, landlock ABI %d)", v.Version, commit, v.GoVersion, v.Libseccomp, v.LandlockABI)
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the build (commit, Go, libseccomp) and this host's Landlock ABI",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion()
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			_, err := fmt.Fprintln(stdout, v.short())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// setVersionFlag makes `blvm-sandbox --version` print the same line as
// `version`. Cobra computes it only when the flag is used: Version must
// be non-empty for the flag to exist, so the template does the work.
func setVersionFlag(root *cobra.Command) {
	root.Version = "set"
	root.SetVersionTemplate("{{versionLine}}\n")
	cobra.AddTemplateFunc("versionLine", func() string { return buildVersion().short() })
}
