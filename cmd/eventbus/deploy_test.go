package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/observe"
)

// The deploy kit (Dockerfile, deploy/k8s/*.yaml, deploy/redis-acl.conf,
// docs/deploy.md) checked against the binary: its serve --help, its build,
// and a real serve.

const repoRoot = "../.."

// serveFlag is one flag of `eventbus serve --help`.
type serveFlag struct {
	name, usage, env, def string
}

var (
	helpFlagRe = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z-]+)(?: \w+)?\s+(.*?) \[\$(EVENTBUS_[A-Z0-9_]+)\](?: \(default (.*)\))?$`)
	envNameRe  = regexp.MustCompile(`\b(EVENTBUS_[A-Z0-9_]+|REDIS_URL)\b`)
)

// serveHelp returns serve's --help output, its own flags (each with its
// variable and default) and every variable name the help mentions: those
// serve reads.
func serveHelp(t *testing.T) (help string, flags []serveFlag, accepted map[string]bool) {
	t.Helper()
	out, err := exec.Command(binary, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("eventbus serve --help: %v\n%s", err, out)
	}
	help = string(out)
	accepted = map[string]bool{}
	for _, m := range envNameRe.FindAllString(help, -1) {
		accepted[m] = true
	}
	for l := range strings.SplitSeq(help, "\n") {
		if m := helpFlagRe.FindStringSubmatch(l); m != nil {
			flags = append(flags, serveFlag{name: m[1], usage: m[2], env: m[3], def: m[4]})
		}
	}
	if len(flags) < 10 {
		t.Fatalf("found %d flags with a variable in serve --help:\n%s", len(flags), help)
	}
	return help, flags, accepted
}

// defaultListenPort is the port of serve's --listen default, which must be
// gateway.DefaultListenAddr's.
func defaultListenPort(t *testing.T, flags []serveFlag) int {
	t.Helper()
	for _, f := range flags {
		if f.name == "listen" {
			def, err := strconv.Unquote(f.def)
			if err != nil || def != gateway.DefaultListenAddr {
				t.Fatalf("serve --listen default %s, want %q", f.def, gateway.DefaultListenAddr)
			}
			return portOf(t, def)
		}
	}
	t.Fatal("no --listen in serve --help")
	return 0
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("port of %q: %v", addr, err)
	}
	return n
}

// dockerInstr is one instruction of the Dockerfile.
type dockerInstr struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile reads the instructions of a Dockerfile (comments
// dropped, continuation lines joined).
func parseDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstr
	var cur strings.Builder
	for l := range strings.SplitSeq(string(raw), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if rest, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// execForm parses a JSON-array (exec form) argument of ENTRYPOINT or CMD.
func execForm(t *testing.T, in dockerInstr) []string {
	t.Helper()
	var v []string
	if err := yaml.Unmarshal([]byte(in.args), &v); err != nil || !strings.HasPrefix(in.args, "[") {
		t.Fatalf("%s %s: want the exec form [\"...\"]", in.cmd, in.args)
	}
	return v
}

// shellWords splits a RUN line the way sh would for what it holds here:
// words, double-quoted strings, VAR=value prefixes.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inQuote, has := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, has = !inQuote, true
		case r == ' ' && !inQuote:
			if has {
				words = append(words, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteRune(r)
			has = true
		}
	}
	if has {
		words = append(words, cur.String())
	}
	return words
}

// TestDockerfileMatchesTheBinary: the image runs the binary as a non-root
// user, exposes serve's default port and starts serve; its go build line,
// run here as written (with a version and a revision for its build
// arguments), makes a static binary whose `version` reports them.
func TestDockerfileMatchesTheBinary(t *testing.T) {
	_, flags, _ := serveHelp(t)
	port := defaultListenPort(t, flags)
	ins := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	var froms, runs []string
	var entry, cmd []string
	var expose, user, copied, copiedFrom string
	args := map[string]string{}
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			runs = append(runs, in.args)
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = strings.Trim(v, `"`)
		case "EXPOSE":
			expose = in.args
		case "USER":
			user = in.args
		case "COPY":
			if f := strings.Fields(in.args); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				copiedFrom, copied = f[1], f[2]
			}
		case "ENTRYPOINT":
			entry = execForm(t, in)
		case "CMD":
			cmd = execForm(t, in)
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("stages %q: want a golang:… AS build stage first, then the final one", froms)
	}
	final := froms[len(froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage FROM %s: want gcr.io/distroless/static (CA certificates, nonroot) or scratch", final)
	}
	goMod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if goLine == nil || args["GO_VERSION"] != string(goLine[1]) {
		t.Errorf("ARG GO_VERSION=%s, want go.mod's go %s", args["GO_VERSION"], goLine[1])
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("USER %q: want a non-root user", user)
	}
	if expose != strconv.Itoa(port) {
		t.Errorf("EXPOSE %s, want serve's default listen port %d", expose, port)
	}
	if len(entry) != 1 || entry[0] != copied || filepath.Base(entry[0]) != "eventbus" {
		t.Errorf("ENTRYPOINT %q, want the binary the final stage copies (%s)", entry, copied)
	}
	if len(cmd) == 0 {
		t.Fatal("no CMD")
	}
	if out, err := exec.Command(binary, append(cmd, "--help")...).CombinedOutput(); err != nil || !strings.Contains(string(out), "eventbus "+strings.Join(cmd, " ")+" [flags]") {
		t.Errorf("CMD %q is not a command of the binary: %v\n%s", cmd, err, out)
	}

	// The build line, run as written.
	var build []string
	for _, r := range runs {
		if strings.Contains(r, "go build") {
			build = shellWords(r)
		}
	}
	if build == nil {
		t.Fatal("no RUN … go build")
	}
	var env []string
	for len(build) > 0 && strings.Contains(build[0], "=") {
		env = append(env, build[0])
		build = build[1:]
	}
	if !slices.Contains(env, "CGO_ENABLED=0") || !slices.Contains(build, "-trimpath") {
		t.Errorf("build %q %q: want CGO_ENABLED=0 and -trimpath", env, build)
	}
	if len(build) < 2 || build[0] != "go" || build[1] != "build" || build[len(build)-1] != "./cmd/eventbus" {
		t.Fatalf("build line %q: want go build … ./cmd/eventbus", build)
	}
	out := filepath.Join(t.TempDir(), "eventbus")
	const version, revision = "v9.8.7-deploytest", "0123456789abcdef0123456789abcdef01234567"
	for i, w := range build {
		w = strings.ReplaceAll(w, "${VERSION}", version)
		w = strings.ReplaceAll(w, "${REVISION}", revision)
		if i > 0 && build[i-1] == "-o" {
			if w != copiedFrom {
				t.Errorf("go build -o %s: the final stage copies %s", w, copiedFrom)
			}
			w = out
		}
		build[i] = w
	}
	c := exec.Command(build[0], build[1:]...)
	c.Dir = repoRoot
	c.Env = append(os.Environ(), env...)
	if o, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(build, " "), err, o)
	}
	v, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), version) || !strings.Contains(string(v), revision) {
		t.Errorf("eventbus version of the Dockerfile's build: %v\n%s\nwant %s and %s", err, v, version, revision)
	}
	m, err := exec.Command("go", "version", "-m", out).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"build\tCGO_ENABLED=0", "build\t-trimpath=true"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("go version -m: no %q\n%s", want, m)
		}
	}
}

// k8sObject is what the tests read of a manifest (yaml.v3 ignores the rest).
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// A Service's selector is the labels; a Deployment's and a
		// PodDisruptionBudget's holds them under matchLabels.
		Selector map[string]any `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
	Containers                    []k8sContainer `yaml:"containers"`
	Volumes                       []struct {
		Name   string `yaml:"name"`
		Secret struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

// k8sManifests reads every object of deploy/k8s/*.yaml, by kind/name.
func k8sManifests(t *testing.T) map[string]k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/k8s/*.yaml: %v", err)
	}
	objs := map[string]k8sObject{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			key := o.Kind + "/" + o.Metadata.Name
			if _, dup := objs[key]; dup {
				t.Fatalf("%s twice", key)
			}
			objs[key] = o
		}
	}
	return objs
}

// podEnv is the environment a container of objs gets: name → value (the
// manifest's placeholder for secrets).
func podEnv(t *testing.T, objs map[string]k8sObject, c k8sContainer) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := objs["ConfigMap/"+ef.ConfigMapRef.Name]
			if !ok {
				t.Fatalf("container %s: envFrom ConfigMap %s is in no manifest", c.Name, ef.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				env[k] = v
			}
		case ef.SecretRef != nil:
			s, ok := objs["Secret/"+ef.SecretRef.Name]
			if !ok {
				t.Fatalf("container %s: envFrom Secret %s is in no manifest", c.Name, ef.SecretRef.Name)
			}
			for k, v := range s.StringData {
				env[k] = v
			}
		}
	}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			s, ok := objs["Secret/"+ref.Name].StringData[ref.Key]
			if !ok {
				t.Fatalf("container %s: %s from Secret %s key %s, which no manifest holds", c.Name, e.Name, ref.Name, ref.Key)
			}
			v = s
		}
		env[e.Name] = v
	}
	return env
}

// notServes are the variables the manifests set that are not serve's: Go's
// own (crypto/x509's extra CA directory, the runtime's memory limit).
var notServes = map[string]bool{"SSL_CERT_DIR": true, "GOMEMLIMIT": true}

// gatewayShutdownBound is the longest `eventbus serve` takes after SIGTERM:
// gateway.Serve closes the push hub and the ingress transport (each bounded
// by gateway.DefaultCloseTimeout, one after the other), then shuts the HTTP
// server down (DefaultCloseTimeout again).
const gatewayShutdownBound = 3 * gateway.DefaultCloseTimeout

// TestK8sManifestsMatchTheBinary: the gateway Deployment sets only variables
// serve reads, listens on the port it declares, probes observe's paths on it,
// and gives serve its whole shutdown; the Service reaches that port; the
// worker example probes observe's paths and waits for the subscribers'
// close timeout.
func TestK8sManifestsMatchTheBinary(t *testing.T) {
	_, flags, accepted := serveHelp(t)
	port := defaultListenPort(t, flags)
	objs := k8sManifests(t)

	gw, ok := objs["Deployment/eventbus-gateway"]
	if !ok {
		t.Fatal("no Deployment eventbus-gateway")
	}
	pod := gw.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("gateway pod: %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) > 0 {
		if out, err := exec.Command(binary, append(c.Args, "--help")...).CombinedOutput(); err != nil || !strings.Contains(string(out), "eventbus serve [flags]") {
			t.Errorf("gateway args %q are not serve: %v\n%s", c.Args, err, out)
		}
	}
	env := podEnv(t, objs, c)
	for name := range env {
		if !accepted[name] && !notServes[name] {
			t.Errorf("gateway env %s: serve reads no such variable (serve --help names %d)", name, len(accepted))
		}
	}
	for _, must := range []string{"EVENTBUS_REDIS_URL", "EVENTBUS_JWT_SECRET", "EVENTBUS_API_KEYS"} {
		if _, ok := env[must]; !ok {
			t.Errorf("gateway env has no %s", must)
		}
	}
	if l, ok := env["EVENTBUS_LISTEN"]; ok && portOf(t, l) != port {
		t.Errorf("EVENTBUS_LISTEN %s: the container port is %d", l, port)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != port || c.Ports[0].Name != "http" {
		t.Errorf("gateway ports %+v, want http: %d (serve's default listen port)", c.Ports, port)
	}
	checkProbes(t, "gateway", c, "http")
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("gateway resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + gatewayShutdownBound
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < need {
		t.Errorf("gateway terminationGracePeriodSeconds %s, want at least %s (preStop sleep + 3 x gateway.DefaultCloseTimeout)", seconds(g), need)
	}
	checkVolumes(t, objs, "gateway", pod)

	svc, ok := objs["Service/eventbus-gateway"]
	if !ok {
		t.Fatal("no Service eventbus-gateway")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != c.Ports[0].Name {
		t.Errorf("Service ports %+v: want targetPort %s", svc.Spec.Ports, c.Ports[0].Name)
	}
	checkSelector(t, svc, gw)
	checkSelector(t, gw, gw)
	if pdb, ok := objs["PodDisruptionBudget/eventbus-gateway"]; ok {
		checkSelector(t, pdb, gw)
	}

	w, ok := objs["Deployment/photo-worker"]
	if !ok {
		t.Fatal("no worker example Deployment photo-worker")
	}
	wp := w.Spec.Template.Spec
	wc := wp.Containers[0]
	if len(wc.Ports) != 1 {
		t.Fatalf("worker ports %+v: want one (its observe endpoints)", wc.Ports)
	}
	checkProbes(t, "worker", wc, wc.Ports[0].Name)
	if g := wp.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < bus.DefaultCloseTimeout {
		t.Errorf("worker terminationGracePeriodSeconds %s, want at least bus.DefaultCloseTimeout %s", seconds(g), bus.DefaultCloseTimeout)
	}
	podEnv(t, objs, wc) // every secret it names exists
	checkSelector(t, w, w)
	checkVolumes(t, objs, "worker", wp)
}

// seconds prints an optional number of seconds.
func seconds(s *int) string {
	if s == nil {
		return "unset (30s)"
	}
	return strconv.Itoa(*s) + "s"
}

func checkProbes(t *testing.T, what string, c k8sContainer, port string) {
	t.Helper()
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != observe.PathReadyz || c.ReadinessProbe.HTTPGet.Port != port {
		t.Errorf("%s readinessProbe %+v, want GET %s on port %s", what, c.ReadinessProbe, observe.PathReadyz, port)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != observe.PathHealthz || c.LivenessProbe.HTTPGet.Port != port {
		t.Errorf("%s livenessProbe %+v, want GET %s on port %s", what, c.LivenessProbe, observe.PathHealthz, port)
	}
}

func checkVolumes(t *testing.T, objs map[string]k8sObject, what string, pod k8sPodSpec) {
	t.Helper()
	for _, v := range pod.Volumes {
		if n := v.Secret.SecretName; n != "" {
			if _, ok := objs["Secret/"+n]; !ok {
				t.Errorf("%s volume %s: Secret %s is in no manifest", what, v.Name, n)
			}
		}
	}
}

// checkSelector: the selector of o selects the pods of Deployment d.
func checkSelector(t *testing.T, o, d k8sObject) {
	t.Helper()
	sel := o.Spec.Selector
	if m, ok := sel["matchLabels"].(map[string]any); ok {
		sel = m
	}
	if len(sel) == 0 {
		t.Errorf("%s/%s selects nothing", o.Kind, o.Metadata.Name)
	}
	for k, v := range sel {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("%s/%s selects %s=%v; the pods of %s are labelled %v", o.Kind, o.Metadata.Name, k, v, d.Metadata.Name, d.Spec.Template.Metadata.Labels)
		}
	}
}

// TestK8sProbesOnARealServe: serve started with the gateway Deployment's
// environment (the secrets' placeholders replaced, Redis the test's, a free
// port) answers the manifest's probe paths 200; with Redis unreachable the
// readiness path answers 503 and the liveness path 200; SIGTERM stops it
// with exit code 0.
func TestK8sProbesOnARealServe(t *testing.T) {
	t.Parallel()
	objs := k8sManifests(t)
	c := objs["Deployment/eventbus-gateway"].Spec.Template.Spec.Containers[0]
	env := podEnv(t, objs, c)
	_, prefix, _ := setup(t)
	env["EVENTBUS_REDIS_URL"] = redistest.URL()
	env["EVENTBUS_PREFIX"] = prefix
	env["EVENTBUS_LISTEN"] = "127.0.0.1:0"
	env["EVENTBUS_JWT_SECRET"] = "k8s-test-secret-0123456789abcdef-0123"
	env["EVENTBUS_API_KEYS"] = "k8s-test-key-0123456789"
	delete(env, "SSL_CERT_DIR") // the test Redis has no TLS
	delete(env, "GOMEMLIMIT")   // a resourceFieldRef: no value outside Kubernetes
	start := func(env map[string]string) *served {
		list := []string{"REDIS_URL="}
		for k, v := range env {
			list = append(list, k+"="+v)
		}
		sort.Strings(list)
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		t.Cleanup(cancel)
		return startServe(t, ctx, list, c.Args...)
	}
	ready, live := c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path

	s := start(env)
	waitReady(t, s.base)
	for _, path := range []string{ready, live} {
		if code, body := getStatus(t, s.base+path); code != http.StatusOK {
			t.Errorf("GET %s: %d %s, want 200", path, code, body)
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v, want exit 0; stderr:\n%s", err, s.stderr())
	}

	down := map[string]string{}
	for k, v := range env {
		down[k] = v
	}
	down["EVENTBUS_REDIS_URL"] = "redis://127.0.0.1:1/0" // nothing listens on port 1
	s = start(down)
	if code, body := getStatus(t, s.base+ready); code != http.StatusServiceUnavailable {
		t.Errorf("Redis unreachable: GET %s: %d %s, want 503", ready, code, body)
	}
	if code, body := getStatus(t, s.base+live); code != http.StatusOK {
		t.Errorf("Redis unreachable: GET %s: %d %s, want 200 (liveness does not depend on Redis)", live, code, body)
	}
	s.stop(t)
}

// TestDeployDocMatches: docs/deploy.md quotes the ACL line of
// deploy/redis-acl.conf verbatim, lists every variable serve reads (and
// no other) with the flag and default serve --help gives, and names the
// files of the kit.
func TestDeployDocMatches(t *testing.T) {
	_, flags, accepted := serveHelp(t)
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "redis-acl.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.SplitSeq(string(acl), "\n") {
		if strings.HasPrefix(l, "user eventbus ") {
			line = l
		}
	}
	if line == "" || !slices.Contains(strings.Split(string(doc), "\n"), line) {
		t.Errorf("docs/deploy.md does not quote the ACL line of deploy/redis-acl.conf on a line of its own:\n%s", line)
	}

	// The table: | `NAME` | `--flag` or — | default | meaning |
	rowRe := regexp.MustCompile("^\\| `((?:EVENTBUS_[A-Z0-9_]+)|REDIS_URL)` \\| (.*?) \\| (.*?) \\|")
	rows := map[string][2]string{}
	for l := range strings.SplitSeq(string(doc), "\n") {
		if m := rowRe.FindStringSubmatch(l); m != nil {
			rows[m[1]] = [2]string{m[2], m[3]}
		}
	}
	for name := range accepted {
		if _, ok := rows[name]; !ok {
			row := "| `" + name + "` | — | — | … |"
			for _, f := range flags {
				if f.env == name {
					def := "—"
					if f.def != "" {
						def = "`" + strings.Trim(f.def, `"`) + "`"
					}
					row = "| `" + name + "` | `--" + f.name + "` | " + def + " | " + f.usage + " |"
				}
			}
			t.Errorf("docs/deploy.md's variable table has no row for %s (serve --help names it); add:\n%s", name, row)
		}
	}
	for name := range rows {
		if !accepted[name] {
			t.Errorf("docs/deploy.md's variable table lists %s, which serve does not read", name)
		}
	}
	for _, f := range flags {
		r, ok := rows[f.env]
		if !ok {
			continue
		}
		if r[0] != "`--"+f.name+"`" {
			t.Errorf("row %s: flag %s, want `--%s`", f.env, r[0], f.name)
		}
		want := "—"
		if f.def != "" {
			want = "`" + strings.Trim(f.def, `"`) + "`"
		}
		if r[1] != want {
			t.Errorf("row %s: default %s, want %s (serve --help)", f.env, r[1], want)
		}
	}
	for _, name := range []string{"Dockerfile", "deploy/k8s/gateway.yaml", "deploy/k8s/worker.yaml", "deploy/k8s/configmap.yaml", "deploy/k8s/secret.yaml", "deploy/redis-acl.conf"} {
		if !bytes.Contains(doc, []byte(name)) {
			t.Errorf("docs/deploy.md does not mention %s", name)
		}
	}
	if fmt.Sprint(gatewayShutdownBound) != "30s" || !bytes.Contains(doc, []byte("30 s")) {
		t.Errorf("docs/deploy.md should give serve's shutdown bound, %s", gatewayShutdownBound)
	}
}
