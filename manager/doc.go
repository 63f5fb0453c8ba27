// Package manager runs the module lifecycle for many modules at once:
// Discovery (the modules dir; the registry plugs in as another Source),
// Verification and Loading through loader, dependency order, Execution
// under runtime's supervisor, hub attachment and the lifecycle events.
// Discovery runs again at every load, install and reload, so the daemon
// never needs a restart to see a module; Reload applies a changed node
// config to exactly the modules it changes. Loads and unloads of one
// module run one at a time.
package manager
