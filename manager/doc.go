// Package manager runs the module lifecycle for many modules at once:
// Discovery (the modules dir; the registry plugs in as another Source),
// Verification and Loading through loader, dependency order, Execution
// under runtime's supervisor, hub attachment and the lifecycle events.
package manager
