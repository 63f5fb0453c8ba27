//go:build cgo

package runtime

import (
	"fmt"
	"strconv"

	libseccomp "github.com/seccomp/libseccomp-golang"
)

// seccompMinAPI is the libseccomp API level whose actions the policy uses:
// level 3 brings SCMP_ACT_KILL_PROCESS, which kills a foreign-arch or x32
// call's whole process rather than one thread.
const seccompMinAPI = 3

func seccompCheck() Check {
	c := Check{Name: "seccomp"}
	api, err := libseccomp.GetAPI()
	major, minor, micro := libseccomp.GetLibraryVersion()
	lib := fmt.Sprintf("libseccomp %d.%d.%d", major, minor, micro)
	switch {
	case err != nil:
		c.Value, c.Verdict, c.Detail = "unknown", VerdictFail, fmt.Sprintf("%s: API level: %v", lib, err)
	case api < seccompMinAPI:
		c.Value, c.Verdict = "API "+strconv.Itoa(int(api)), VerdictFail
		c.Detail = fmt.Sprintf("%s with this kernel offers API level %d; the policy needs %d (SCMP_ACT_KILL_PROCESS)", lib, api, seccompMinAPI)
	default:
		c.Value, c.Verdict, c.Detail = "API "+strconv.Itoa(int(api)), VerdictOK, lib
	}
	return c
}
