package sdk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// Exit codes the SDK answers a CLI invocation with on its own.
const (
	ExitUsage    = 64 // unknown command (sysexits EX_USAGE)
	ExitSoftware = 70 // the handler panicked (EX_SOFTWARE)
	ExitBusy     = 75 // too many invocations at once (EX_TEMPFAIL)
)

// CLISpec is the module's operator commands, sent as RegisterCliSpec.
type CLISpec struct {
	Name     string // top-level command name; empty means the module name
	About    string
	Commands []CLICommand
}

// CLICommand is one subcommand the operator may run.
type CLICommand struct {
	Name, About, Usage string
}

// CLIHandler runs one CLI command; it returns what the operator sees.
type CLIHandler func(ctx context.Context, command string, args []string) (stdout, stderr []byte, exit int)

// Caller is the module that called this module's API, as the hub knows it
// from the caller's socket (never from its claims).
type Caller struct {
	ModuleID, ModuleName string
}

// APIHandler answers one call from another module. Returning an *Error
// sends its code and message; any other error is INTERNAL.
type APIHandler func(ctx context.Context, caller Caller, params []byte) ([]byte, error)

type invocations struct {
	slots chan struct{}

	mu    sync.RWMutex
	cli   map[string]bool // registered command names
	cliFn CLIHandler
	api   map[string]APIHandler
}

func (iv *invocations) init(max int) {
	iv.slots = make(chan struct{}, max)
	iv.api = make(map[string]APIHandler)
}

// HandleCLI installs h for the commands in spec and registers the spec with
// the hub (needs register_cli). Call it again to replace both.
func (m *Module) HandleCLI(ctx context.Context, spec CLISpec, h CLIHandler) error {
	names := make(map[string]bool, len(spec.Commands))
	cmds := make([]*pb.CliCommand, 0, len(spec.Commands))
	for _, c := range spec.Commands {
		names[c.Name] = true
		cmds = append(cmds, &pb.CliCommand{Name: c.Name, About: c.About, Usage: c.Usage})
	}
	m.invoke.mu.Lock()
	m.invoke.cli, m.invoke.cliFn = names, h
	m.invoke.mu.Unlock()

	const method = "cli.RegisterCliSpec"
	r, err := m.roundTrip(ctx, func(id uint64) *pb.Envelope {
		return &pb.Envelope{Body: &pb.Envelope_RegisterCliSpec{RegisterCliSpec: &pb.RegisterCliSpec{
			Id: id, Name: spec.Name, About: spec.About, Commands: cmds,
		}}}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if r.GetCode() != pb.ErrorCode_OK {
		return &Error{Method: method, Code: r.GetCode(), Message: r.GetMessage()}
	}
	return nil
}

// HandleAPI installs fn as the handler of one of this module's API methods.
// Other modules can call it once RegisterAPI has told the hub.
func (m *Module) HandleAPI(method string, fn APIHandler) {
	m.invoke.mu.Lock()
	m.invoke.api[method] = fn
	m.invoke.mu.Unlock()
}

// RegisterAPI offers every method installed with HandleAPI to other modules
// (modules.RegisterApi; needs register_module_api).
func (m *Module) RegisterAPI(ctx context.Context) error {
	m.invoke.mu.RLock()
	methods := make([]string, 0, len(m.invoke.api))
	for name := range m.invoke.api {
		methods = append(methods, name)
	}
	m.invoke.mu.RUnlock()
	sort.Strings(methods)
	return m.Call(ctx, "modules.RegisterApi", &pb.ApiSpec{Methods: methods}, nil)
}

// CallModule calls method on the provider module's API through the hub
// ("modules.Call:<provider>"; needs the provider's capability). The
// provider's refusal comes back as an *Error.
func (m *Module) CallModule(ctx context.Context, provider, method string, params []byte) ([]byte, error) {
	raw, err := protoMarshal(&pb.ModuleCallParams{Method: method, Params: params})
	if err != nil {
		return nil, err
	}
	r, err := m.callRaw(ctx, "modules.Call:"+provider, raw)
	if err != nil {
		return nil, err
	}
	return r.GetResult(), nil
}

// startInvocation runs an invocation in its own goroutine so that a slow
// command never holds up the reader, and answers at once when too many are
// already running.
func (m *Module) startInvocation(inv *pb.Invocation) {
	select {
	case m.invoke.slots <- struct{}{}:
	default:
		m.answer(inv, nil, &Error{Code: pb.ErrorCode_UNAVAILABLE, Message: "module busy: too many invocations at once"})
		return
	}
	m.handlers.Add(1)
	go func() {
		defer m.handlers.Done()
		defer func() { <-m.invoke.slots }()
		ctx := m.ctx
		if t := inv.GetTimeoutMs(); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Millisecond)
			defer cancel()
		}
		res, err := m.runInvocation(ctx, inv)
		m.answer(inv, res, err)
	}()
}

// runInvocation calls the handler; a panic becomes an INTERNAL answer.
func (m *Module) runInvocation(ctx context.Context, inv *pb.Invocation) (res *pb.InvocationResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("invocation handler panicked", "id", inv.GetId(), "panic", fmt.Sprint(r))
			res, err = nil, &Error{Code: pb.ErrorCode_INTERNAL, Message: "handler panicked"}
		}
	}()
	switch k := inv.GetKind().(type) {
	case *pb.Invocation_Cli:
		return m.runCLI(ctx, k.Cli), nil
	case *pb.Invocation_Api:
		return m.runAPI(ctx, k.Api), nil
	}
	return nil, &Error{Code: pb.ErrorCode_INVALID, Message: "unknown invocation kind"}
}

func (m *Module) runCLI(ctx context.Context, c *pb.CliInvocation) *pb.InvocationResult {
	m.invoke.mu.RLock()
	known, fn := m.invoke.cli[c.GetCommand()], m.invoke.cliFn
	names := make([]string, 0, len(m.invoke.cli))
	for n := range m.invoke.cli {
		names = append(names, n)
	}
	m.invoke.mu.RUnlock()
	if !known || fn == nil {
		sort.Strings(names)
		msg := fmt.Sprintf("unknown command %q; commands: %s\n", c.GetCommand(), strings.Join(names, ", "))
		return cliResult(nil, []byte(msg), ExitUsage)
	}
	stdout, stderr, exit := fn(ctx, c.GetCommand(), c.GetArgs())
	return cliResult(stdout, stderr, exit)
}

func cliResult(stdout, stderr []byte, exit int) *pb.InvocationResult {
	return &pb.InvocationResult{Kind: &pb.InvocationResult_Cli{Cli: &pb.CliResult{
		Stdout: stdout, Stderr: stderr, ExitCode: int32(exit),
	}}}
}

func (m *Module) runAPI(ctx context.Context, a *pb.ApiInvocation) *pb.InvocationResult {
	m.invoke.mu.RLock()
	fn := m.invoke.api[a.GetMethod()]
	m.invoke.mu.RUnlock()
	if fn == nil {
		return apiResult(nil, &Error{Code: pb.ErrorCode_INVALID, Message: fmt.Sprintf("unknown method %q", a.GetMethod())})
	}
	out, err := fn(ctx, Caller{ModuleID: a.GetCallerModuleId(), ModuleName: a.GetCallerModuleName()}, a.GetParams())
	return apiResult(out, err)
}

func apiResult(out []byte, err error) *pb.InvocationResult {
	r := &pb.ApiResult{Code: pb.ErrorCode_OK, Result: out}
	if err != nil {
		r.Result = nil
		var e *Error
		if errors.As(err, &e) {
			r.Code, r.Message = e.Code, e.Message
		} else {
			r.Code, r.Message = pb.ErrorCode_INTERNAL, err.Error()
		}
		if r.Code == pb.ErrorCode_OK { // an *Error must never read as success
			r.Code = pb.ErrorCode_INTERNAL
		}
	}
	return &pb.InvocationResult{Kind: &pb.InvocationResult_Api{Api: r}}
}

// answer sends the InvocationResult for inv. A failure before a handler
// ran (busy, panic) is shaped for the invocation's kind.
func (m *Module) answer(inv *pb.Invocation, res *pb.InvocationResult, err error) {
	if res == nil {
		if _, isCLI := inv.GetKind().(*pb.Invocation_Cli); isCLI {
			exit := ExitSoftware
			if CodeOf(err) == pb.ErrorCode_UNAVAILABLE {
				exit = ExitBusy
			}
			res = cliResult(nil, []byte(err.Error()+"\n"), exit)
		} else {
			res = apiResult(nil, err)
		}
	}
	res.Id = inv.GetId()
	env := &pb.Envelope{Body: &pb.Envelope_InvocationResult{InvocationResult: res}}
	err = m.send(m.ctx, env)
	if errors.Is(err, ipc.ErrFrameTooLarge) {
		// Still answer, so the caller is not left to time out.
		m.log.Warn("invocation result too large", "id", inv.GetId(), "err", err)
		tooLarge := &Error{Code: pb.ErrorCode_INTERNAL, Message: "result too large for one frame"}
		res = apiResult(nil, tooLarge)
		if _, isCLI := inv.GetKind().(*pb.Invocation_Cli); isCLI {
			res = cliResult(nil, []byte(tooLarge.Message+"\n"), ExitSoftware)
		}
		res.Id = inv.GetId()
		err = m.send(m.ctx, &pb.Envelope{Body: &pb.Envelope_InvocationResult{InvocationResult: res}})
	}
	if err != nil {
		m.log.Warn("cannot answer invocation", "id", inv.GetId(), "err", err)
	}
}
