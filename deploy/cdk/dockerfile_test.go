package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Line int
	Cmd  string // upper case
	Args string
}

// stage is a FROM and what follows it.
type stage struct {
	From  string
	Name  string
	Instr []instruction
}

// parseDockerfile splits a Dockerfile into stages: enough to check the
// properties the images promise, not a full parser.
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := stage{}
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.Name = f[i+1]
					i++
				case st.From == "":
					st.From = f[i]
				}
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", path, in.Line, in.Cmd)
			}
			return
		}
		stages[len(stages)-1].Instr = append(stages[len(stages)-1].Instr, in)
	}
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 {
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			start = i + 1
		} else if strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continued instruction
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: ends inside a continued instruction", path)
	}
	known := map[string]bool{"FROM": true, "ARG": true, "WORKDIR": true, "COPY": true, "RUN": true, "USER": true, "EXPOSE": true, "ENTRYPOINT": true, "ENV": true, "LABEL": true}
	for _, st := range stages {
		for _, in := range st.Instr {
			if !known[in.Cmd] {
				t.Errorf("%s:%d: unexpected instruction %s", path, in.Line, in.Cmd)
			}
		}
	}
	return stages
}

// TestDockerfiles checks what the images promise: a multi-stage build that
// cross-compiles a static binary (target OS/arch from buildx, so arm64 and
// amd64 both work; the source links libzstd statically through cgo, the
// target is pure Go), a version stamp, and a distroless nonroot final stage
// with no shell to run and the binary as exec-form entrypoint.
func TestDockerfiles(t *testing.T) {
	for _, kind := range []string{sourceKind, targetKind} {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join("..", "..", dockerfile(kind))
			stages := parseDockerfile(t, path)
			if len(stages) != 2 {
				t.Fatalf("%d stages, want build + final", len(stages))
			}
			build, final := stages[0], stages[1]
			if !strings.HasPrefix(build.From, "golang:1.26") {
				t.Errorf("build stage FROM %s, want golang:1.26", build.From)
			}
			raw, _ := os.ReadFile(path)
			if !regexp.MustCompile(`(?m)^FROM --platform=\$BUILDPLATFORM golang`).Match(raw) {
				t.Error("build stage must run on $BUILDPLATFORM (cross-compile, no emulation)")
			}
			var goBuild string
			for _, in := range build.Instr {
				if in.Cmd == "RUN" && strings.Contains(in.Args, "./cmd/"+kind) {
					goBuild = in.Args
				}
			}
			static := []string{"CGO_ENABLED=0"}
			if kind == sourceKind {
				static = []string{"CGO_ENABLED=1", "CC=target-cc", "-tags netgo,osusergo", "-linkmode external -extldflags -static"}
			}
			for _, want := range append(static,
				"GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-trimpath",
				"-X github.com/xrc-dev/xrc/internal/app.Version=$VERSION", "-o /out/"+kind,
			) {
				if !strings.Contains(goBuild, want) {
					t.Errorf("go build of ./cmd/%s lacks %q: %s", kind, want, goBuild)
				}
			}
			if !hasInstr(build, "ARG", "TARGETARCH") || !hasInstr(build, "ARG", "VERSION") {
				t.Error("build stage must declare ARG TARGETOS TARGETARCH VERSION")
			}

			if final.From != "gcr.io/distroless/static-debian12:nonroot" {
				t.Errorf("final FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.From)
			}
			var user, entry string
			for _, in := range final.Instr {
				switch in.Cmd {
				case "RUN":
					t.Errorf("final stage has RUN %q: distroless has no shell", in.Args)
				case "USER":
					user = in.Args
				case "ENTRYPOINT":
					entry = in.Args
				case "COPY":
					if !strings.Contains(in.Args, "--from=build") {
						t.Errorf("final stage copies from the context: %s", in.Args)
					}
				}
			}
			if user != "nonroot" && user != "nonroot:nonroot" && user != nonRootUser {
				t.Errorf("USER %q, want nonroot", user)
			}
			if entry != `["/usr/local/bin/`+kind+`"]` {
				t.Errorf("ENTRYPOINT %s, want exec form of /usr/local/bin/%s", entry, kind)
			}
			if !hasInstr(final, "EXPOSE", "9090") {
				t.Error("final stage does not EXPOSE 9090 (metrics and health)")
			}
			if binaryPath(kind) != "/usr/local/bin/"+kind {
				t.Errorf("the health check runs %s, which the image does not hold", binaryPath(kind))
			}
		})
	}
}

// dockerfileCopies lists the paths a Dockerfile copies from its context.
func dockerfileCopies(t *testing.T, kind string) []string {
	var out []string
	for _, st := range parseDockerfile(t, filepath.Join("..", "..", dockerfile(kind))) {
		for _, in := range st.Instr {
			if in.Cmd != "COPY" || strings.Contains(in.Args, "--from=") {
				continue
			}
			f := strings.Fields(in.Args)
			for _, src := range f[:len(f)-1] {
				if !strings.HasPrefix(src, "--") {
					out = append(out, src)
				}
			}
		}
	}
	return out
}

func hasInstr(st stage, cmd, substr string) bool {
	for _, in := range st.Instr {
		if in.Cmd == cmd && strings.Contains(in.Args, substr) {
			return true
		}
	}
	return false
}
