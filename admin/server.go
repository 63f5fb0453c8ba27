package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/blvm/blvm-sandbox/manifest"
)

// ServerOptions configures a Server. The zero value works.
type ServerOptions struct {
	// Socket is the Unix socket path; DefaultSocket if empty.
	Socket string
	// Logger receives one line per action and per failure; slog.Default
	// if nil.
	Logger *slog.Logger
	// LogPollInterval is how often a followed log is checked for growth
	// and rotation; 250ms if zero.
	LogPollInterval time.Duration
}

// maxBody bounds a request body (a CLI invocation).
const maxBody = 1 << 20

// Server serves the admin API for one Manager.
type Server struct {
	m    Manager
	sock string
	log  *slog.Logger
	poll time.Duration
	h    http.Handler

	mu   sync.Mutex
	ln   *socketListener
	base context.Context // Serve's; actions run under it
}

// NewServer returns a Server for m; call Listen (optional) and Serve.
func NewServer(m Manager, opts ServerOptions) *Server {
	s := &Server{m: m, sock: opts.Socket, log: opts.Logger, poll: opts.LogPollInterval}
	if s.sock == "" {
		s.sock = DefaultSocket
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.poll <= 0 {
		s.poll = 250 * time.Millisecond
	}
	s.h = s.routes()
	return s
}

// Socket is the path the server listens on.
func (s *Server) Socket() string { return s.sock }

// Handler is the API without its socket, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.h }

// Listen creates the socket, so that a socket in use or a bad path is
// reported before the daemon starts anything else. Serve calls it if it
// was not called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := listenSocket(s.sock, s.log)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

// Serve answers requests until ctx ends, then ends the open streams,
// closes the listener and removes the socket. It returns nil after a
// shutdown by ctx.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.base = ctx
	s.mu.Unlock()
	defer ln.remove()

	srv := &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: 10 * time.Second,
		// Request contexts derive from ctx so that log follows and event
		// streams end with the daemon instead of holding Shutdown up.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("admin: listening", "socket", s.sock)
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve %s: %w", s.sock, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// Close removes the socket of a server that Listened but will not Serve
// (the daemon failed to start after it).
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil && s.base == nil {
		s.ln.remove()
		s.ln = nil
	}
}

func (s *Server) routes() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(s.m))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/modules", s.handleModules)
	mux.HandleFunc("POST /v1/modules/{name}/load", s.action("load", s.m.Load))
	mux.HandleFunc("POST /v1/modules/{name}/unload", s.action("unload", s.m.Unload))
	mux.HandleFunc("POST /v1/modules/{name}/start", s.action("start", s.m.Start))
	mux.HandleFunc("POST /v1/modules/{name}/stop", s.action("stop", s.m.Stop))
	mux.HandleFunc("POST /v1/modules/{name}/restart", s.action("restart", s.m.Restart))
	mux.HandleFunc("GET /v1/modules/{name}/logs", s.handleLogs)
	mux.HandleFunc("GET /v1/modules/{name}/policy", s.handlePolicy)
	mux.HandleFunc("GET /v1/cli", s.handleCliSpecs)
	mux.HandleFunc("POST /v1/modules/{name}/cli", s.handleRunCli)
	mux.HandleFunc("GET /v1/events", s.handleEvents)
	mux.HandleFunc("POST /v1/reload", s.handleReload)
	mux.HandleFunc("POST /v1/install", s.handleInstall)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return mux
}

func (s *Server) handleModules(w http.ResponseWriter, r *http.Request) {
	mods := s.m.Modules()
	if mods == nil {
		mods = []ModuleInfo{}
	}
	writeJSON(w, http.StatusOK, mods)
}

// action answers POST /v1/modules/{name}/VERB with the module's row after
// the action, or 204 when the module is no longer listed (unloaded).
func (s *Server) action(verb string, do func(context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.moduleName(w, r)
		if !ok {
			return
		}
		start := time.Now()
		// An operator's Ctrl-C must not leave a stop or an unload cascade
		// half done: the action ends with the daemon, not the request.
		if err := do(s.actionContext(), name); err != nil {
			s.fail(w, r, fmt.Errorf("%s %s: %w", verb, name, err))
			return
		}
		s.log.Info("admin: "+verb, "module", name, "took", time.Since(start).Round(time.Millisecond))
		for _, mi := range s.m.Modules() {
			if mi.Name == name {
				writeJSON(w, http.StatusOK, mi)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) actionContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base == nil {
		return context.Background()
	}
	return s.base
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	name, ok := s.moduleName(w, r)
	if !ok {
		return
	}
	path, err := s.m.LogPath(name)
	if err != nil {
		s.fail(w, r, fmt.Errorf("logs %s: %w", name, err))
		return
	}
	s.serveLog(w, r, name, path)
}

func (s *Server) handleCliSpecs(w http.ResponseWriter, r *http.Request) {
	out := make(map[string]json.RawMessage)
	for mod, spec := range s.m.CliSpecs() {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(spec)
		if err != nil {
			s.fail(w, r, fmt.Errorf("cli specs: %s: %w", mod, err))
			return
		}
		out[mod] = b
	}
	writeJSON(w, http.StatusOK, out)
}

// decodeBody reads a request's JSON body into v: bounded, and strict about
// fields, so a client's typo is an error rather than a default.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (s *Server) handleRunCli(w http.ResponseWriter, r *http.Request) {
	name, ok := s.moduleName(w, r)
	if !ok {
		return
	}
	var req cliRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, fmt.Errorf("cli %s: %w request body: %v", name, ErrInvalid, err))
		return
	}
	if req.Command == "" {
		s.fail(w, r, fmt.Errorf("cli %s: %w request: command is required", name, ErrInvalid))
		return
	}
	res, err := s.m.RunCli(r.Context(), name, req.Command, req.Args)
	if err != nil {
		s.fail(w, r, fmt.Errorf("cli %s %s: %w", name, req.Command, err))
		return
	}
	s.log.Info("admin: cli", "module", name, "command", req.Command, "exit_code", res.GetExitCode())
	writeJSON(w, http.StatusOK, cliResponse{Stdout: res.GetStdout(), Stderr: res.GetStderr(), ExitCode: res.GetExitCode()})
}

// handleEvents streams events as NDJSON, one object per line, until the
// client goes away or the daemon stops.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	events := s.m.Subscribe(r.Context())
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			// What the manager published before the daemon stopped still
			// goes out: the unload events of its shutdown.
			for {
				select {
				case ev, ok := <-events:
					if !ok || enc.Encode(ev) != nil || rc.Flush() != nil {
						return
					}
				default:
					return
				}
			}
		case ev, ok := <-events:
			if !ok {
				return
			}
			if enc.Encode(ev) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// moduleName reads and checks {name}; a bad name is answered with 400.
func (s *Server) moduleName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !manifest.ValidModuleName(name) {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: fmt.Sprintf("invalid module name %q: want [a-z0-9][a-z0-9-]{0,62}", name)})
		return "", false
	}
	return name, true
}

// fail answers err with the status its kind maps to.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code >= 500 {
		s.log.Error("admin: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Info("admin: request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeJSON(w, code, errorResponse{Error: err.Error()})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrUnknownModule):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// A write error means the client is gone; nobody is left to tell.
	_ = json.NewEncoder(w).Encode(v)
}
