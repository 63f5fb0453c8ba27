package policy

import (
	"strconv"
	"strings"
)

// ShimArgs renders the Landlock part of the policy as the argv of the
// container's process: the static shim at ShimPath, which applies the
// ruleset and then execs the module's own argv (after "--").
//
//	/.blvm/landlock-shim --min-abi 6
//	    --allow execute,read_file:/module/x
//	    --allow read_file,write_file:/dev/null
//	    --scope abstract_unix_socket --scope signal
//	    -- /module/x
//
// Each --allow carries a PathRule's Access names verbatim, comma-separated,
// then a colon and the path (everything after the first colon, so a path may
// hold colons). The shim knows the kernel's right names and refuses any it
// does not, so no right is dropped or invented on the way.
func (p *Policy) ShimArgs() []string {
	args := []string{ShimPath, "--min-abi", strconv.Itoa(p.Landlock.MinABI)}
	for _, r := range p.Landlock.Rules {
		args = append(args, "--allow", strings.Join(r.Access, ",")+":"+r.Path)
	}
	for _, s := range p.Landlock.Scopes {
		args = append(args, "--scope", s.Name)
	}
	args = append(args, "--")
	return append(args, p.Process.Args...)
}
