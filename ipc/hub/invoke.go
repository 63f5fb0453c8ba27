package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// Registration limits.
const (
	maxAPIMethods        = 256
	maxCliCommands       = 64
	maxNameLen           = 128
	maxTextLen           = 4096
	maxPendingPerConn    = 1024
	maxPendingPerModule  = 256     // invocations waiting on one module's answers
	maxPendingBytes      = 8 << 20 // their frames' bytes
	maxAPINameBytes      = 16 << 10
	maxCliSpecBytes      = 64 << 10
	invocationKindCLI    = "cli"
	invocationKindAPI    = "api"
	errInvocationRefused = "the module may not answer this invocation"
)

// pendingInvocation waits for the InvocationResult with its id.
type pendingInvocation struct {
	kind string
	ch   chan invocationOutcome // capacity 1
}

type invocationOutcome struct {
	res *pb.InvocationResult
	err error
}

func (p *pendingInvocation) finish(res *pb.InvocationResult, err error) {
	select {
	case p.ch <- invocationOutcome{res, err}:
	default:
	}
}

// invoke sends inv to the module on c and waits for its result, the
// connection's end, or ctx.
func (c *conn) invoke(ctx context.Context, inv *pb.Invocation, kind string) (*pb.InvocationResult, error) {
	inv.Id = c.invSeq.Add(1)
	if dl, ok := ctx.Deadline(); ok {
		inv.TimeoutMs = uint32(max(1, time.Until(dl).Milliseconds()))
	}
	frame, err := ipc.MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Invocation{Invocation: inv}}, c.h.cfg.MaxFrame)
	if err != nil {
		return nil, err
	}
	// What waits on a module's answers is charged to that module: a
	// module that never answers holds at most this much of the hub.
	m, size := c.m, int64(len(frame))
	if n := m.pendingCount.Add(1); n > maxPendingPerModule {
		m.pendingCount.Add(-1)
		return nil, fmt.Errorf("%w: %d invocations already waiting for module %s", ErrUnavailable, maxPendingPerModule, m.spec.Name)
	}
	defer m.pendingCount.Add(-1)
	if b := m.pendingBytes.Add(size); b > maxPendingBytes && b != size {
		m.pendingBytes.Add(-size)
		return nil, fmt.Errorf("%w: %d bytes of invocations already waiting for module %s", ErrUnavailable, b-size, m.spec.Name)
	}
	defer m.pendingBytes.Add(-size)
	p := &pendingInvocation{kind: kind, ch: make(chan invocationOutcome, 1)}
	c.pmu.Lock()
	if len(c.pending) >= maxPendingPerConn {
		c.pmu.Unlock()
		return nil, fmt.Errorf("%w: %d invocations already waiting", ErrUnavailable, maxPendingPerConn)
	}
	c.pending[inv.Id] = p
	c.pmu.Unlock()
	defer func() {
		c.pmu.Lock()
		delete(c.pending, inv.Id)
		c.pmu.Unlock()
	}()

	if err := c.enqueue(ctx.Done(), frame); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, ctx.Err()
		}
		return nil, err
	}
	select {
	case o := <-p.ch:
		return o.res, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, fmt.Errorf("%w: connection closed", ErrUnavailable)
	}
}

// handleInvocationResult matches a result to its invocation. Answering a CLI
// invocation needs "cli.InvocationResult", an API invocation
// "modules.RegisterApi"; a result nobody waits for is counted and ignored.
func (c *conn) handleInvocationResult(r *pb.InvocationResult) {
	st := c.m.stats
	c.pmu.Lock()
	p := c.pending[r.Id]
	delete(c.pending, r.Id)
	c.pmu.Unlock()
	if p == nil {
		st.invalid.Add(1)
		c.m.log.info("hub: invocation result for no waiting invocation", slog.Uint64("id", r.Id))
		return
	}
	var need string
	switch r.Kind.(type) {
	case *pb.InvocationResult_Cli:
		need = "cli.InvocationResult"
		if p.kind != invocationKindCLI {
			need = ""
		}
	case *pb.InvocationResult_Api:
		need = "modules.RegisterApi"
		if p.kind != invocationKindAPI {
			need = ""
		}
	}
	if need == "" {
		st.invalid.Add(1)
		p.finish(nil, fmt.Errorf("%w: result of the wrong kind for a %s invocation", ErrUnavailable, p.kind))
		return
	}
	if !c.m.permit(need) {
		st.denied.Add(1)
		c.m.log.info("hub: denied", slog.String("method", need))
		p.finish(nil, fmt.Errorf("%w: %s", ErrUnavailable, errInvocationRefused))
		return
	}
	p.finish(r, nil)
}

// registerAPI records the methods the module offers to other modules. A new
// registration replaces the previous one; invocations go to this connection.
func registerAPI(_ context.Context, c *conn, params []byte) ([]byte, *callError) {
	var p pb.ApiSpec
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	if len(p.Methods) == 0 || len(p.Methods) > maxAPIMethods {
		return nil, errorf(pb.ErrorCode_INVALID, "want 1 to %d methods, got %d", maxAPIMethods, len(p.Methods))
	}
	set := make(map[string]struct{}, len(p.Methods))
	total := 0
	for i, name := range p.Methods {
		if !validName(name) {
			return nil, errorf(pb.ErrorCode_INVALID, "methods[%d]: bad method name %s: want 1 to %d printable bytes, no spaces or controls",
				i, logText(name, 64), maxNameLen)
		}
		if total += len(name); total > maxAPINameBytes {
			return nil, errorf(pb.ErrorCode_INVALID, "methods: more than %d bytes of names", maxAPINameBytes)
		}
		set[name] = struct{}{}
	}
	m := c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if isClosed(c.done) || m.detached {
		return nil, errorf(pb.ErrorCode_UNAVAILABLE, "connection closing")
	}
	m.api, m.apiConn = set, c
	c.m.log.info("hub: module API registered", slog.Int("methods", len(set)))
	return nil, nil
}

// callModule carries a call to provider's API as an Invocation. The caller's
// id and name come from the caller's socket.
func callModule(ctx context.Context, c *conn, provider string, params []byte) ([]byte, *callError) {
	var p pb.ModuleCallParams
	if e := decode(params, &p); e != nil {
		return nil, e
	}
	if p.Method == "" {
		return nil, errorf(pb.ErrorCode_INVALID, "method is empty")
	}
	pm := c.h.module(provider)
	if pm == nil {
		return nil, errorf(pb.ErrorCode_UNAVAILABLE, "module %q is not running", provider)
	}
	pm.mu.Lock()
	pc := pm.apiConn
	_, has := pm.api[p.Method]
	pm.mu.Unlock()
	if pc == nil {
		return nil, errorf(pb.ErrorCode_UNAVAILABLE, "module %q has registered no API", provider)
	}
	if !has {
		return nil, errorf(pb.ErrorCode_NOT_FOUND, "module %q has no method %q", provider, p.Method)
	}
	res, err := pc.invoke(ctx, &pb.Invocation{Kind: &pb.Invocation_Api{Api: &pb.ApiInvocation{
		CallerModuleId:   c.m.spec.ID,
		CallerModuleName: c.m.spec.Name,
		Method:           p.Method,
		Params:           p.Params,
	}}}, invocationKindAPI)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return nil, errorf(pb.ErrorCode_TIMEOUT, "module %q did not answer in time", provider)
	case err != nil:
		return nil, errorf(pb.ErrorCode_UNAVAILABLE, "module %q: %v", provider, err)
	}
	api := res.GetApi()
	switch {
	case api.GetCode() == pb.ErrorCode_OK:
		return api.GetResult(), nil
	case pb.ErrorCode_name[int32(api.GetCode())] == "":
		return nil, errorf(pb.ErrorCode_INTERNAL, "module %q answered an unknown error code %d", provider, api.GetCode())
	}
	return nil, &callError{code: api.GetCode(), msg: api.GetMessage()}
}

// handleRegisterCli stores the module's CLI spec and answers with a Response
// carrying the spec's id.
func (c *conn) handleRegisterCli(spec *pb.RegisterCliSpec) {
	st := c.m.stats
	st.requests.Add(1)
	if !c.m.reqRate.take(1) {
		st.rateLimited.Add(1)
		c.answer("cli.RegisterCliSpec", spec.Id, pb.ErrorCode_RATE_LIMITED, "request rate limit exceeded", nil)
		return
	}
	if !c.m.permit("cli.RegisterCliSpec") {
		st.denied.Add(1)
		c.m.log.info("hub: denied", slog.String("method", "cli.RegisterCliSpec"))
		c.answer("cli.RegisterCliSpec", spec.Id, pb.ErrorCode_PERMISSION_DENIED, `method "cli.RegisterCliSpec" is not granted to this module`, nil)
		return
	}
	if msg := checkCliSpec(spec); msg != "" {
		st.invalid.Add(1)
		c.answer("cli.RegisterCliSpec", spec.Id, pb.ErrorCode_INVALID, msg, nil)
		return
	}
	stored := proto.Clone(spec).(*pb.RegisterCliSpec)
	stored.Id = 0
	if stored.Name == "" {
		stored.Name = c.m.spec.Name
	}
	m := c.m
	m.mu.Lock()
	if isClosed(c.done) || m.detached {
		m.mu.Unlock()
		return
	}
	m.cli = &cliRegistration{spec: stored, conn: c}
	m.mu.Unlock()
	c.m.log.info("hub: CLI registered", slog.String("name", stored.Name), slog.Int("commands", len(stored.Commands)))
	c.answer("cli.RegisterCliSpec", spec.Id, pb.ErrorCode_OK, "", nil)
}

// checkCliSpec validates a CLI spec before it is stored: what it holds ends
// up on an operator's terminal, so names are printable and text is
// printable apart from newlines and tabs; counts and bytes are bounded.
func checkCliSpec(s *pb.RegisterCliSpec) string {
	if size := proto.Size(s); size > maxCliSpecBytes {
		return fmt.Sprintf("spec is %d bytes, limit %d", size, maxCliSpecBytes)
	}
	if s.Name != "" && !validName(s.Name) {
		return fmt.Sprintf("name: bad command name %s: want 1 to %d printable bytes, no spaces or controls", logText(s.Name, 64), maxNameLen)
	}
	if !validText(s.About, maxTextLen) {
		return fmt.Sprintf("about: want at most %d bytes of printable UTF-8 (newlines and tabs allowed)", maxTextLen)
	}
	if len(s.Commands) == 0 || len(s.Commands) > maxCliCommands {
		return fmt.Sprintf("want 1 to %d commands, got %d", maxCliCommands, len(s.Commands))
	}
	seen := make(map[string]bool, len(s.Commands))
	for i, cmd := range s.Commands {
		if !validName(cmd.Name) {
			return fmt.Sprintf("commands[%d].name: bad command name %s: want 1 to %d printable bytes, no spaces or controls", i, logText(cmd.Name, 64), maxNameLen)
		}
		if seen[cmd.Name] {
			return fmt.Sprintf("command %q registered twice", cmd.Name)
		}
		seen[cmd.Name] = true
		if !validText(cmd.About, maxTextLen) {
			return fmt.Sprintf("command %q: about: want at most %d bytes of printable UTF-8 (newlines and tabs allowed)", cmd.Name, maxTextLen)
		}
		if !validText(cmd.Usage, maxTextLen) {
			return fmt.Sprintf("command %q: usage: want at most %d bytes of printable UTF-8 (newlines and tabs allowed)", cmd.Name, maxTextLen)
		}
	}
	return ""
}

// CliSpecs returns the CLI spec of every attached module that registered
// one, by module name (getmoduleclispecs).
func (h *Hub) CliSpecs() map[string]*pb.RegisterCliSpec {
	h.mu.Lock()
	mods := make([]*module, 0, len(h.modules))
	for _, m := range h.modules {
		mods = append(mods, m)
	}
	h.mu.Unlock()
	out := make(map[string]*pb.RegisterCliSpec)
	for _, m := range mods {
		m.mu.Lock()
		if m.cli != nil {
			out[m.spec.Name] = proto.Clone(m.cli.spec).(*pb.RegisterCliSpec)
		}
		m.mu.Unlock()
	}
	return out
}

// RunCli runs one of a module's registered CLI commands (runmodulecli): it
// sends an Invocation and waits for the result, at most Config.CallTimeout
// or ctx's deadline, whichever comes first.
func (h *Hub) RunCli(ctx context.Context, module, command string, args []string) (*pb.CliResult, error) {
	m := h.module(module)
	if m == nil {
		return nil, fmt.Errorf("run %s %s: %w: not attached", module, command, ErrUnavailable)
	}
	m.mu.Lock()
	reg := m.cli
	m.mu.Unlock()
	if reg == nil {
		return nil, fmt.Errorf("run %s %s: %w: no CLI registered", module, command, ErrUnavailable)
	}
	known := make([]string, 0, len(reg.spec.Commands))
	found := false
	for _, c := range reg.spec.Commands {
		known = append(known, c.Name)
		found = found || c.Name == command
	}
	if !found {
		sort.Strings(known)
		return nil, fmt.Errorf("run %s %s: %w (the module offers %v)", module, command, ErrUnknownCommand, known)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.CallTimeout)
	defer cancel()
	res, err := reg.conn.invoke(ctx, &pb.Invocation{Kind: &pb.Invocation_Cli{Cli: &pb.CliInvocation{
		Command: command, Args: append([]string(nil), args...),
	}}}, invocationKindCLI)
	if err != nil {
		return nil, fmt.Errorf("run %s %s: %w", module, command, err)
	}
	return res.GetCli(), nil
}
