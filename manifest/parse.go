package manifest

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/internal/tomlfile"
)

// Parse reads and validates the manifest at path.
//
// The contract, which `explain` relies on:
//   - err == nil: m is complete and valid.
//   - m == nil: the file could not be read or is not TOML; err says where.
//   - m != nil and err is Problems: the file decoded but some keys are
//     unknown, have the wrong type, or fail Validate. m holds every value
//     that decoded, so a caller may show it (explain lists the problems
//     under "binary." and "signatures." as "load would be refused"), but
//     must never load a module from it.
//
// Problems name the file by its base name, e.g. "module.toml:14: ...".
//
// The file is read with safefile: a symlink, FIFO, device, directory or a
// file over safefile.MaxTOML is refused, naming the file and the reason.
func Parse(path string) (*Manifest, error) {
	data, err := safefile.ReadPath(path, safefile.MaxTOML)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return ParseBytes(path, data)
}

// ParseBytes is Parse for a manifest already in memory; file is recorded in
// Manifest.Path and its base name is printed in problems. See Parse for what
// is returned.
func ParseBytes(file string, data []byte) (*Manifest, error) {
	name := FileName
	if file != "" {
		name = filepath.Base(file)
	}
	d, raw, syntax := tomlfile.Open(data)
	if syntax != nil {
		return nil, Problems{fromIssue(name, *syntax)}
	}

	m := &Manifest{Path: file, Lines: d.Lines}
	// expires is decoded untyped first: decoding straight into time.Time
	// would lose whether the TOML datetime had an offset.
	var expires any
	fields := map[string]any{
		"name":                  &m.Name,
		"version":               &m.Version,
		"entry_point":           &m.EntryPoint,
		"description":           &m.Description,
		"author":                &m.Author,
		"expires":               &expires,
		"capabilities":          &m.Capabilities,
		"dependencies":          &m.Dependencies,
		"optional_dependencies": &m.OptionalDependencies,
		"config_schema":         &m.ConfigSchema,
		"binary":                &m.Binary,
		"config":                &m.Config,
		"signatures":            &m.Signatures,
		"payment":               &m.Payment,
	}
	known := slices.Sorted(maps.Keys(fields))
	for _, key := range d.SortedKeys(raw) {
		dst, ok := fields[key]
		if !ok {
			d.Unknown(key, known)
			continue
		}
		d.Decode(key, raw[key], dst)
	}
	if expires != nil {
		if t, ok := expires.(time.Time); !ok {
			d.Add("expires", "wrong type: want a datetime such as 2027-01-01T00:00:00Z")
		} else if isLocalTime(t.Location().String()) {
			d.Add("expires", "must be an offset datetime such as 2027-01-01T00:00:00Z, so it means the same instant everywhere")
		} else {
			m.Expires = &t
		}
	}
	d.Undecoded(func(parent toml.Key) []string { return knownKeys[parent.String()] })

	var ps Problems
	for _, is := range d.Issues {
		ps = append(ps, fromIssue(name, is))
	}
	for _, p := range m.validate(name) {
		if !d.Failed(p.Field) {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		SortProblems(ps)
		return m, ps
	}
	return m, nil
}

// knownKeys lists the keys allowed in each table, for "did you mean".
var knownKeys = map[string][]string{
	"binary":                 {"hash", "size"},
	"config":                 {"hash", "size"},
	"signatures":             {"threshold", "maintainers"},
	"signatures.maintainers": {"name", "public_key", "signature"},
	"payment":                {"required", "price_sats", "author_payment_code", "commons_payment_code", "payment_signature"},
}

func fromIssue(file string, is tomlfile.Issue) Problem {
	return Problem{File: file, Line: is.Line, Field: is.Field, Message: is.Message}
}

// SortProblems orders problems by line, then field, so output is stable.
func SortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Field < ps[j].Field
	})
}

// isLocalTime reports whether a decoded TOML datetime had no offset;
// BurntSushi/toml marks those with these location names.
func isLocalTime(loc string) bool {
	return loc == "datetime-local" || loc == "date-local" || loc == "time-local"
}
