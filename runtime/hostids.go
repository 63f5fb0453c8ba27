package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// hostIDFiles are the files that say which host ids are in use: users and
// groups (one id per entry), and the subordinate ranges other user
// namespaces (podman, LXC, Docker's userns-remap) map to. A module range
// that overlapped any of them would share its files with that user.
type hostIDFiles struct {
	Passwd, Group, SubUID, SubGID string
}

// etcIDFiles are the host's own files.
func etcIDFiles() hostIDFiles {
	return hostIDFiles{Passwd: "/etc/passwd", Group: "/etc/group", SubUID: "/etc/subuid", SubGID: "/etc/subgid"}
}

// hostConflict is one entry of a host file that claims some ids.
type hostConflict struct {
	file   string
	line   int
	text   string
	lo, hi uint64 // ids lo..hi-1
}

func (c hostConflict) String() string {
	return fmt.Sprintf("%s:%d (%q: ids %d-%d)", c.file, c.line, c.text, c.lo, c.hi-1)
}

// hostIDs is every id range the host's files claim. A module's uids and gids
// are the same numbers, so users' uids and gids and groups' gids all count.
type hostIDs []hostConflict

// conflict returns the first host entry that overlaps ids.
func (h hostIDs) conflict(ids IDRange) (hostConflict, bool) {
	for _, c := range h {
		if ids.overlaps(c.lo, c.hi) {
			return c, true
		}
	}
	return hostConflict{}, false
}

// read parses the host's files. A missing file claims nothing; a line that
// cannot be parsed is an error naming it, since the ids it meant to claim
// are unknown.
func (f hostIDFiles) read() (hostIDs, error) {
	var out hostIDs
	for _, src := range []struct {
		path   string
		fields int
		ids    func(fields []string) ([][2]uint64, error)
	}{
		{f.Passwd, 7, func(x []string) ([][2]uint64, error) { return singles(x[2], x[3]) }},
		{f.Group, 4, func(x []string) ([][2]uint64, error) { return singles(x[2]) }},
		{f.SubUID, 3, subRange},
		{f.SubGID, 3, subRange},
	} {
		if src.path == "" {
			continue
		}
		got, err := readIDFile(src.path, src.fields, src.ids)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

func readIDFile(path string, fields int, ids func([]string) ([][2]uint64, error)) (hostIDs, error) {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host ids: %w", err)
	}
	defer file.Close()
	var out hostIDs
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		// NIS compat lines (+name, -name) name no ids of their own.
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		x := strings.Split(line, ":")
		if len(x) < fields {
			return nil, fmt.Errorf("host ids: %s:%d: %d fields, want %d", path, n, len(x), fields)
		}
		rs, err := ids(x)
		if err != nil {
			return nil, fmt.Errorf("host ids: %s:%d: %w", path, n, err)
		}
		for _, r := range rs {
			out = append(out, hostConflict{file: path, line: n, text: line, lo: r[0], hi: r[1]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("host ids: %s: %w", path, err)
	}
	return out, nil
}

// singles parses numeric ids, each claiming one id.
func singles(xs ...string) ([][2]uint64, error) {
	var out [][2]uint64
	for _, x := range xs {
		id, err := strconv.ParseUint(x, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("id %q: not a number", x)
		}
		out = append(out, [2]uint64{id, id + 1})
	}
	return out, nil
}

// subRange parses a subordinate id line, name:first:count.
func subRange(x []string) ([][2]uint64, error) {
	first, err := strconv.ParseUint(x[1], 10, 32)
	if err != nil {
		return nil, fmt.Errorf("first id %q: not a number", x[1])
	}
	count, err := strconv.ParseUint(x[2], 10, 32)
	if err != nil {
		return nil, fmt.Errorf("count %q: not a number", x[2])
	}
	if count == 0 {
		return nil, nil
	}
	return [][2]uint64{{first, first + count}}, nil
}
