// Package policies holds the reviewed policy data: the capability catalog
// and the syscall groups. The TOML files are the source of truth; this
// package only embeds them so the binary carries exactly what was reviewed.
package policies

import "embed"

// Files holds every *.toml file in this directory.
//
//go:embed *.toml
var Files embed.FS
