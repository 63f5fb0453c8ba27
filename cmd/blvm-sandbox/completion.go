package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// completionTimeout bounds the daemon round trip a <TAB> makes: a shell
// must never hang on a daemon that is busy or gone.
const completionTimeout = time.Second

// completeModules completes a module name from the daemon's list; with no
// daemon it offers nothing, quietly (a completion has nowhere to print an
// error). Names already on the line are not offered again.
func (o *operator) completeModules(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	mods, err := o.client().Modules(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, m := range mods {
		if strings.HasPrefix(m.Name, toComplete) && !slices.Contains(args, m.Name) && safeCompletion(m.Name) {
			out = append(out, cobra.CompletionWithDesc(m.Name, m.State))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeCli completes `cli NAME COMMAND`: the modules that registered a
// CLI, then that module's commands.
func (o *operator) completeCli(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 1 {
		return nil, cobra.ShellCompDirectiveDefault // the module's own arguments
	}
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	specs, err := o.client().CliSpecs(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	if len(args) == 0 {
		for name := range specs {
			if strings.HasPrefix(name, toComplete) && safeCompletion(name) {
				out = append(out, name)
			}
		}
	} else if spec, ok := specs[args[0]]; ok {
		for _, c := range spec.GetCommands() {
			// A module's command names are its own text: only plain words
			// reach the operator's shell.
			if strings.HasPrefix(c.GetName(), toComplete) && safeCompletion(c.GetName()) {
				out = append(out, c.GetName())
			}
		}
	}
	slices.Sort(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}

// safeCompletion admits words a shell inserts as they are: letters,
// digits and -_.: only. Module names are already that; CLI command names
// come from the module.
func safeCompletion(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)
		if !ok {
			return false
		}
	}
	return true
}

// addCompletions registers the value sets of flags that take one of a
// few words, on every command of root that has such a flag (explain's
// --format and --storage-backend today), so that the command that owns
// the flag stays unaware of completion.
func addCompletions(root *cobra.Command) {
	values := map[string][]string{
		"format":          {"text", "json", "oci", "bpf"},
		"storage-backend": {"project", "image", "none"},
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for name, vs := range values {
			if c.Flags().Lookup(name) != nil {
				_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(vs, cobra.ShellCompDirectiveNoFileComp))
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
