//go:build !cgo

package runtime

func seccompCheck() Check {
	return Check{Name: "seccomp", Value: "not built in", Verdict: VerdictFail,
		Detail: "this binary was built without cgo, so without libseccomp: build it with make build"}
}
